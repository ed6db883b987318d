//! Just enough of a BTF reader to find where a member lives in a kernel
//! struct (`task_struct.tgid`), so a BPF program can read it with
//! `bpf_probe_read_kernel` without CO-RE.
//!
//! aya-obj parses BTF but keeps member offsets private; this walks the type
//! section of `/sys/kernel/btf/vmlinux` directly. The format is stable
//! (Documentation/bpf/btf.rst): a header, then `btf_type` records of 12
//! bytes each followed by kind-specific data, then the string section.

/// Errors reading BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The blob is not BTF or is truncated.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// No such struct or member.
    #[error("BTF has no {0}")]
    NotFound(String),
    /// Reading the file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

fn string_at(strings: &[u8], offset: u32) -> &[u8] {
    let start = offset as usize;
    strings.get(start..).map_or(&[][..], |rest| {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    })
}

/// Byte offset of `member` in struct `name`, searched in the BTF blob `data`
/// (little-endian, as on x86-64). Bitfield members are not supported.
pub fn member_offset(data: &[u8], name: &str, member: &str) -> Result<u32, BtfError> {
    if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
        return Err(BtfError::Malformed("bad magic"));
    }
    let hdr_len = u32_at(data, 4)? as usize;
    let type_off = u32_at(data, 8)? as usize;
    let type_len = u32_at(data, 12)? as usize;
    let str_off = u32_at(data, 16)? as usize;
    let str_len = u32_at(data, 20)? as usize;
    let types = data
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or(BtfError::Malformed("type section out of bounds"))?;
    let strings = data
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or(BtfError::Malformed("string section out of bounds"))?;
    let mut at = 0;
    while at + 12 <= types.len() {
        let name_off = u32_at(types, at)?;
        let info = u32_at(types, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31 == 1;
        let body = at + 12;
        let extra = match kind {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => vlen * 12, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => vlen * 8,           // ENUM, FUNC_PROTO
            2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
            _ => return Err(BtfError::Malformed("unknown type kind")),
        };
        if kind == KIND_STRUCT && string_at(strings, name_off) == name.as_bytes() {
            for i in 0..vlen {
                let m = body + i * 12;
                if string_at(strings, u32_at(types, m)?) == member.as_bytes() {
                    let offset = u32_at(types, m + 8)?;
                    let bits = if kflag { offset & 0x00ff_ffff } else { offset };
                    if bits % 8 != 0 {
                        return Err(BtfError::NotFound(format!("byte-aligned {name}.{member}")));
                    }
                    return Ok(bits / 8);
                }
            }
        }
        at = body + extra;
    }
    Err(BtfError::NotFound(format!(
        "struct {name} with member {member}"
    )))
}

/// Byte offsets of `task_struct.tgid` and `task_struct.pid` (the thread
/// id) in the running kernel, and of `se.sum_exec_runtime` (0 if not
/// found: the scheduler programs then do without it).
pub fn task_offsets() -> Result<(u32, u32, u32), BtfError> {
    const PATH: &str = "/sys/kernel/btf/vmlinux";
    let data = std::fs::read(PATH).map_err(|source| BtfError::Io { path: PATH, source })?;
    let sum_exec = member_offset(&data, "task_struct", "se")
        .and_then(|se| Ok(se + member_offset(&data, "sched_entity", "sum_exec_runtime")?))
        .unwrap_or(0);
    Ok((
        member_offset(&data, "task_struct", "tgid")?,
        member_offset(&data, "task_struct", "pid")?,
        sum_exec,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `int` and `struct task { int pid; int tgid; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0task\0pid\0tgid\0";
        let mut types = Vec::new();
        let push = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
        // [1] INT "int", size 4, encoding word.
        push(&mut types, 1);
        push(&mut types, 1 << 24);
        push(&mut types, 4);
        push(&mut types, 32);
        // [2] STRUCT "task", 2 members, size 8.
        push(&mut types, 5);
        push(&mut types, (4 << 24) | 2);
        push(&mut types, 8);
        for (name, offset_bits) in [(10, 0), (14, 32)] {
            push(&mut types, name);
            push(&mut types, 1);
            push(&mut types, offset_bits);
        }
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        for x in [
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            push(&mut data, x);
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(strings);
        data
    }

    #[test]
    fn finds_a_member_offset() {
        assert_eq!(member_offset(&blob(), "task", "tgid").unwrap(), 4);
        assert_eq!(member_offset(&blob(), "task", "pid").unwrap(), 0);
        assert!(matches!(
            member_offset(&blob(), "task", "comm"),
            Err(BtfError::NotFound(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(member_offset(b"", "task", "tgid").is_err());
        assert!(
            member_offset(
                &[
                    0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0, 0,
                    0, 0, 0
                ],
                "t",
                "x"
            )
            .is_err()
        );
        let mut truncated = blob();
        truncated.truncate(40);
        assert!(member_offset(&truncated, "task", "tgid").is_err());
    }

    #[test]
    fn running_kernel_has_task_struct_tgid() {
        // /sys/kernel/btf/vmlinux exists on every kernel ferret supports.
        let (offset, pid_offset, sum_exec) = task_offsets().unwrap();
        assert_eq!(pid_offset + 4, offset, "pid comes just before tgid");
        assert!(sum_exec > 0 && sum_exec % 8 == 0, "{sum_exec}");
        assert!(offset > 0 && offset < 16384, "{offset}");
    }
}
