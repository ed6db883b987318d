//! Which instructions the kernel lets a uprobe sit on, and where a
//! function's entry probe goes when it refuses the first one.
//!
//! x86's uprobe code copies the probed instruction and runs it out of line,
//! and refuses instructions it cannot run there: any with a LOCK prefix or an
//! ES/CS/SS/DS segment prefix, and a list of opcodes (far jumps, port I/O,
//! `int3`, ...). It refuses silently: the link is created, but the probe is
//! never installed and never fires (bpftrace shows the same: zero hits).
//! Seen here on a C function whose first instruction is an atomic counter
//! increment (`lock addq $1, counter(%rip)`). So ferret checks each probe
//! point itself, and moves an entry probe past refused straight-line
//! instructions that leave the stack pointer alone; the stack pointer at the
//! moved probe is then the entry's, which is all the reconstructor needs.

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess, Register,
};

/// Legacy prefixes the kernel refuses (`is_prefix_bad` in arch/x86/kernel/uprobes.c).
const BAD_PREFIXES: [u8; 5] = [0x26, 0x2e, 0x36, 0x3e, 0xf0];
/// All legacy prefixes, to find where the opcode starts.
const PREFIXES: [u8; 11] = [
    0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3,
];
/// One-byte opcodes the kernel's 64-bit table refuses: invalid in long mode,
/// far transfers, port I/O, traps, `hlt`, `cli`/`sti`, and the VEX/EVEX
/// escapes (refused by older kernels; treated as refused to stay safe).
const BAD_OPCODES: [u8; 36] = [
    0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x62, 0x6c, 0x6d,
    0x6e, 0x6f, 0x9a, 0xc4, 0xc5, 0xcc, 0xce, 0xd4, 0xd5, 0xd6, 0xe4, 0xe5, 0xe6, 0xe7, 0xea, 0xec,
    0xed, 0xee, 0xef, 0xf4,
];

/// Whether the kernel accepts a uprobe on the instruction at the start of `code`.
pub fn kernel_accepts(code: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = code.get(i) {
        if BAD_PREFIXES.contains(&b) {
            return false;
        }
        if !PREFIXES.contains(&b) {
            break;
        }
        i += 1;
    }
    // Skip a REX prefix.
    if code.get(i).is_some_and(|b| (0x40..=0x4f).contains(b)) {
        i += 1;
    }
    match code.get(i) {
        None => false,
        Some(op) => !BAD_OPCODES.contains(op) && !matches!(op, 0xf1 | 0xfa | 0xfb),
    }
}

/// Why a function's entry cannot be probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryRefusal {
    /// The first instruction is refused and the ones after it cannot stand in
    /// for it (a branch, a stack-pointer change, or a jump lands among them).
    Refused,
    /// The bytes did not decode.
    Undecodable,
}

impl std::fmt::Display for EntryRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refused => "its first instruction cannot carry a uprobe",
            Self::Undecodable => "its code does not decode",
        })
    }
}

/// Where the entry probe of the function whose code is `code` (at `svma`)
/// goes: the offset from `svma` of the first instruction the kernel accepts,
/// provided every instruction before it is straight-line code that leaves
/// the stack pointer alone and no branch in the function lands after the
/// entry and at or before the chosen instruction.
pub fn entry_probe_offset(code: &[u8], svma: u64) -> Result<u64, EntryRefusal> {
    if kernel_accepts(code) {
        return Ok(0);
    }
    let mut decoder = Decoder::with_ip(64, code, svma, DecoderOptions::NONE);
    let mut info = InstructionInfoFactory::new();
    let mut insn = Instruction::default();
    let mut chosen = None;
    while decoder.can_decode() {
        let offset = decoder.position();
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            return Err(EntryRefusal::Undecodable);
        }
        if kernel_accepts(&code[offset..]) {
            chosen = Some(offset as u64);
            break;
        }
        let writes_sp = info.info(&insn).used_registers().iter().any(|r| {
            matches!(r.register(), Register::RSP | Register::ESP | Register::SP)
                && !matches!(
                    r.access(),
                    OpAccess::Read | OpAccess::CondRead | OpAccess::None
                )
        });
        if insn.flow_control() != FlowControl::Next || writes_sp {
            return Err(EntryRefusal::Refused);
        }
    }
    let chosen = chosen.ok_or(EntryRefusal::Refused)?;
    // No branch may land inside the skipped range or on the chosen
    // instruction: the probe would fire again without a call.
    let landing = svma + 1..=svma + chosen;
    let mut decoder = Decoder::with_ip(64, code, svma, DecoderOptions::NONE);
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if matches!(
            insn.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
        ) && landing.contains(&insn.near_branch_target())
        {
            return Err(EntryRefusal::Refused);
        }
    }
    Ok(chosen)
}

/// Whether the function at `svma` calls itself directly. With uretprobes the
/// kernel drops return probes beyond 64 pending per thread, so deep
/// recursion would lose exits; ferret probes such functions' return
/// instructions instead.
pub fn calls_itself(code: &[u8], svma: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, code, svma, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.flow_control() == FlowControl::Call && insn.near_branch_target() == svma {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_refuses_lock_and_segment_prefixes_and_accepts_ordinary_code() {
        assert!(
            !kernel_accepts(&[0xf0, 0x48, 0x83, 0x05, 0x6f, 0x2d, 0, 0, 0x01]),
            "lock addq"
        );
        assert!(!kernel_accepts(&[0x3e, 0xff, 0xe0]), "notrack jmp rax");
        assert!(!kernel_accepts(&[0xcc]), "int3");
        assert!(!kernel_accepts(&[]), "nothing");
        assert!(kernel_accepts(&[0x55]), "push rbp");
        assert!(kernel_accepts(&[0xc3]), "ret");
        assert!(kernel_accepts(&[0xf3, 0x0f, 0x1e, 0xfa]), "endbr64");
        assert!(kernel_accepts(&[0x48, 0x89, 0xe5]), "mov rbp, rsp");
        assert!(
            kernel_accepts(&[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0]),
            "fs: load"
        );
    }

    // leaf() from tests/programs/nested.c at -O2: an atomic increment first.
    const LEAF: [u8; 27] = [
        0xf0, 0x48, 0x83, 0x05, 0x6f, 0x2d, 0x00, 0x00, 0x01, // lock addq $1, x(%rip)
        0x48, 0x8b, 0x05, 0x58, 0x2d, 0x00, 0x00, // mov x(%rip), %rax
        0x48, 0x01, 0xc7, // add %rax, %rdi
        0x48, 0x89, 0x3d, 0x4e, 0x2d, 0x00, 0x00, // mov %rdi, x(%rip)
        0xc3, // ret
    ];

    #[test]
    fn entry_probe_moves_past_a_locked_increment() {
        assert_eq!(entry_probe_offset(&LEAF, 0x1300), Ok(9));
        assert_eq!(entry_probe_offset(&[0x55, 0xc3], 0x1000), Ok(0));
    }

    #[test]
    fn entry_probe_is_refused_when_a_branch_lands_on_the_moved_point() {
        // lock inc [rip]; nop; jmp back to the nop
        let code = [0xf0, 0xff, 0x05, 0, 0, 0, 0, 0x90, 0xeb, 0xfd];
        assert_eq!(
            entry_probe_offset(&code, 0x2000),
            Err(EntryRefusal::Refused)
        );
    }

    #[test]
    fn entry_probe_is_refused_when_the_skipped_code_moves_the_stack() {
        // ds push rbp: the prefix is refused and the push moves rsp.
        let code = [0x3e, 0x55, 0xc3];
        assert_eq!(
            entry_probe_offset(&code, 0x3000),
            Err(EntryRefusal::Refused)
        );
        // int3 is not straight-line code.
        assert_eq!(
            entry_probe_offset(&[0xcc, 0x55, 0xc3], 0x3000),
            Err(EntryRefusal::Refused)
        );
        // lock xadd [rsp], eax is refused and only reads rsp, so it may be skipped
        let code = [0xf0, 0x0f, 0xc1, 0x04, 0x24, 0xc3];
        assert_eq!(entry_probe_offset(&code, 0x3000), Ok(5));
    }

    #[test]
    fn direct_self_calls_are_found() {
        // call self; ret
        let code = [0xe8, 0xfb, 0xff, 0xff, 0xff, 0xc3];
        assert!(calls_itself(&code, 0x4000));
        assert!(!calls_itself(&LEAF, 0x1300));
    }
}
