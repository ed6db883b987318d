//! Finding the instructions through which a function leaves.
//!
//! ferret probes these instructions instead of using uretprobes. A uretprobe
//! replaces the return address on the stack, so a C++ exception or a Rust
//! panic unwinding through the frame finds a return address that is in no
//! function, and the target calls `std::terminate`. A uprobe on a `ret` or a
//! tail-call `jmp` fires before the instruction runs, leaves the stack alone,
//! and sees the stack pointer the function was entered with (the return
//! address is still on top), which lets the reconstructor pair it with the
//! entry.

use std::ops::Range;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, OpKind, Register};

/// How a function leaves at an exit point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// `ret` or `ret imm16`.
    Return,
    /// `jmp rel` to outside the function: a tail call. A jump to the
    /// function's own first instruction also counts, because the entry probe
    /// fires again there and the pair must stay balanced.
    TailCall,
    /// `jcc rel` to outside the function (gcc emits these for
    /// `if (x) return g();`).
    ConditionalTailCall,
    /// `jmp qword ptr [mem]` without an index register: a call through the
    /// GOT (`[rip+disp]`), a function-pointer global or a vtable slot
    /// (`[reg+disp]`).
    IndirectTailCall,
}

/// One instruction a function leaves through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitPoint {
    /// Address of the instruction in the ELF.
    pub svma: u64,
    /// Offset of the instruction in the file, where its uprobe goes.
    pub file_offset: u64,
    /// Why this instruction leaves the function.
    pub kind: ExitKind,
}

/// Everything [`scan_exits`] learned about a function's ways out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exits {
    /// The exits, in address order per code range.
    pub points: Vec<ExitPoint>,
    /// `svma`s of jumps through a register or an indexed table (`jmp rax`,
    /// `notrack jmp rax`, `jmp [table+rax*8]`). Compilers emit these for
    /// `switch` jump tables, whose targets stay inside the function, so they
    /// are not exits; but `return fp(x)` through a function pointer compiles
    /// to `jmp rax` too, and then the function's exit is missed. Listed so a
    /// caller can warn.
    pub indirect_jumps: Vec<u64>,
    /// `svma` of the first byte that did not decode, if decoding stopped
    /// early; exits after it are missing.
    pub undecodable_at: Option<u64>,
}

/// Decodes `code` (the bytes at `svma`, found at `file_offset` in the file)
/// as 64-bit x86 and collects its exits.
///
/// `inside` are the address ranges that belong to the function (its body and
/// any compiler-split `.cold` part); a branch into them is control flow
/// within the function, not an exit, unless it targets `entry`.
pub fn scan_exits(
    code: &[u8],
    svma: u64,
    file_offset: u64,
    inside: &[Range<u64>],
    entry: u64,
) -> Exits {
    let mut exits = Exits::default();
    let leaves = |target: u64| target == entry || !inside.iter().any(|r| r.contains(&target));
    let mut decoder = Decoder::with_ip(64, code, svma, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        let ip = instruction.ip();
        if instruction.is_invalid() {
            exits.undecodable_at = Some(ip);
            break;
        }
        let kind = match instruction.flow_control() {
            FlowControl::Return => Some(ExitKind::Return),
            FlowControl::UnconditionalBranch if is_near_branch(&instruction) => {
                leaves(instruction.near_branch_target()).then_some(ExitKind::TailCall)
            }
            FlowControl::ConditionalBranch if is_near_branch(&instruction) => {
                leaves(instruction.near_branch_target()).then_some(ExitKind::ConditionalTailCall)
            }
            FlowControl::IndirectBranch => {
                let through_memory = instruction.op0_kind() == OpKind::Memory;
                if through_memory && instruction.memory_index() == Register::None {
                    Some(ExitKind::IndirectTailCall)
                } else {
                    exits.indirect_jumps.push(ip);
                    None
                }
            }
            _ => None,
        };
        if let Some(kind) = kind {
            exits.points.push(ExitPoint {
                svma: ip,
                // `wrapping_sub`: the decoder's ip wraps at the top of the address space.
                file_offset: file_offset.saturating_add(ip.wrapping_sub(svma)),
                kind,
            });
        }
    }
    exits
}

fn is_near_branch(instruction: &Instruction) -> bool {
    matches!(
        instruction.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVMA: u64 = 0x1000;
    const OFFSET: u64 = 0x200;

    /// Scans `code` as a whole function at `SVMA` (file offset `OFFSET`).
    fn scan(code: &[u8]) -> Exits {
        let body = SVMA..SVMA + code.len() as u64;
        scan_exits(code, SVMA, OFFSET, &[body], SVMA)
    }

    fn offsets(exits: &Exits) -> Vec<(u64, ExitKind)> {
        exits
            .points
            .iter()
            .map(|p| (p.file_offset, p.kind))
            .collect()
    }

    #[test]
    fn frame_pointer_prologue_and_ret() {
        // push rbp; mov rbp, rsp; mov eax, edi; pop rbp; ret
        let code = [0x55, 0x48, 0x89, 0xe5, 0x89, 0xf8, 0x5d, 0xc3];
        let exits = scan(&code);
        assert_eq!(offsets(&exits), vec![(OFFSET + 7, ExitKind::Return)]);
        assert_eq!(exits.points[0].svma, SVMA + 7);
        assert!(exits.indirect_jumps.is_empty());
        assert_eq!(exits.undecodable_at, None);
    }

    #[test]
    fn two_returns_after_endbr64() {
        // endbr64; test edi, edi; je +6; mov eax, 1; ret; xor eax, eax; ret 8
        let code = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x85, 0xff, 0x74, 0x06, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3,
            0x31, 0xc0, 0xc2, 0x08, 0x00,
        ];
        assert_eq!(
            offsets(&scan(&code)),
            vec![
                (OFFSET + 13, ExitKind::Return),
                (OFFSET + 16, ExitKind::Return)
            ]
        );
    }

    #[test]
    fn jump_outside_is_a_tail_call() {
        // mov edi, 1; jmp rel32 (to 0x1000 + 10 + 0x100)
        let code = [0xbf, 0x01, 0x00, 0x00, 0x00, 0xe9, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(
            offsets(&scan(&code)),
            vec![(OFFSET + 5, ExitKind::TailCall)]
        );
    }

    #[test]
    fn jump_inside_is_a_loop() {
        // nop; loop: dec edi; jnz loop; jmp short +0 (next instruction); ret
        let code = [0x90, 0xff, 0xcf, 0x75, 0xfc, 0xeb, 0x00, 0xc3];
        assert_eq!(offsets(&scan(&code)), vec![(OFFSET + 7, ExitKind::Return)]);
    }

    #[test]
    fn conditional_jump_outside_is_a_tail_call() {
        // test edi, edi; jne rel32 (far outside); xor eax, eax; ret
        let code = [
            0x85, 0xff, 0x0f, 0x85, 0x00, 0x10, 0x00, 0x00, 0x31, 0xc0, 0xc3,
        ];
        assert_eq!(
            offsets(&scan(&code)),
            vec![
                (OFFSET + 2, ExitKind::ConditionalTailCall),
                (OFFSET + 10, ExitKind::Return)
            ]
        );
    }

    #[test]
    fn jump_to_own_entry_is_an_exit() {
        // dec edi; jmp short back to the first byte
        let code = [0xff, 0xcf, 0xeb, 0xfc];
        assert_eq!(
            offsets(&scan(&code)),
            vec![(OFFSET + 2, ExitKind::TailCall)]
        );
    }

    #[test]
    fn got_tail_call() {
        // jmp qword ptr [rip+0x1000]
        let code = [0xff, 0x25, 0x00, 0x10, 0x00, 0x00];
        assert_eq!(
            offsets(&scan(&code)),
            vec![(OFFSET, ExitKind::IndirectTailCall)]
        );
    }

    #[test]
    fn vtable_tail_call() {
        // mov rax, [rdi]; jmp qword ptr [rax+0x10]
        let code = [0x48, 0x8b, 0x07, 0xff, 0x60, 0x10];
        assert_eq!(
            offsets(&scan(&code)),
            vec![(OFFSET + 3, ExitKind::IndirectTailCall)]
        );
    }

    #[test]
    fn register_and_indexed_jumps_are_jump_tables() {
        // jmp rax; notrack jmp rax; jmp qword ptr [rax*8+0x400000]; ret
        let code = [
            0xff, 0xe0, 0x3e, 0xff, 0xe0, 0xff, 0x24, 0xc5, 0x00, 0x00, 0x40, 0x00, 0xc3,
        ];
        let exits = scan(&code);
        assert_eq!(offsets(&exits), vec![(OFFSET + 12, ExitKind::Return)]);
        assert_eq!(exits.indirect_jumps, vec![SVMA, SVMA + 2, SVMA + 5]);
    }

    #[test]
    fn int3_padding_is_ignored() {
        let code = [0x31, 0xc0, 0xc3, 0xcc, 0xcc, 0xcc];
        assert_eq!(offsets(&scan(&code)), vec![(OFFSET + 2, ExitKind::Return)]);
    }

    #[test]
    fn jump_into_cold_part_is_not_an_exit() {
        // jmp rel32 to 0x2000, which belongs to the function's `.cold` part.
        let code = [0xe9, 0xfb, 0x0f, 0x00, 0x00, 0xc3];
        let inside = [SVMA..SVMA + 6, 0x2000..0x2010];
        let exits = scan_exits(&code, SVMA, OFFSET, &inside, SVMA);
        assert_eq!(offsets(&exits), vec![(OFFSET + 5, ExitKind::Return)]);
    }

    #[test]
    fn stops_at_undecodable_bytes() {
        // ret; then an opcode invalid in 64-bit mode (0x06, push es); then ret
        let code = [0xc3, 0x06, 0xc3];
        let exits = scan(&code);
        assert_eq!(offsets(&exits), vec![(OFFSET, ExitKind::Return)]);
        assert_eq!(exits.undecodable_at, Some(SVMA + 1));
    }

    #[test]
    fn truncated_instruction_does_not_panic() {
        // ret; then the first two bytes of a jmp rel32
        let exits = scan(&[0xc3, 0xe9, 0x00]);
        assert_eq!(exits.points.len(), 1);
        assert_eq!(exits.undecodable_at, Some(SVMA + 1));
        assert_eq!(scan(&[]), Exits::default());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x1234_5678_u32;
        let mut bytes = Vec::with_capacity(4096);
        for _ in 0..4096 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            bytes.push(state as u8);
        }
        for start in 0..64 {
            let _ = scan(&bytes[start..]);
        }
    }
}
