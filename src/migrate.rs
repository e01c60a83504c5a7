//! Lets a closing listener's waiting connections move to another listener
//! of its `SO_REUSEPORT` group instead of being reset: a two-instruction
//! eBPF program of type `BPF_PROG_TYPE_SK_REUSEPORT`, attach type
//! `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE`, attached to the group
//! (`SO_ATTACH_REUSEPORT_EBPF`). It picks no socket itself, so the kernel
//! keeps choosing by hash, but its attach type turns migration on for this
//! group alone, as `net.ipv4.tcp_migrate_req=1` would for every group of the
//! network namespace (kernel 5.14 or later; loading needs `CAP_BPF`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::libc;

/// `BPF_PROG_LOAD` (enum bpf_cmd).
const BPF_PROG_LOAD: libc::c_long = 5;
/// enum bpf_prog_type.
const BPF_PROG_TYPE_SK_REUSEPORT: u32 = 21;
/// enum bpf_attach_type.
const BPF_SK_REUSEPORT_SELECT_OR_MIGRATE: u32 = 40;
/// SOL_SOCKET option (asm-generic/socket.h; the architectures this is
/// packaged for use the generic value).
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;

/// `r0 = SK_PASS (1); exit`: pass, choosing nothing (the kernel hashes).
/// struct bpf_insn is {u8 code; u8 dst:4, src:4; s16 off; s32 imm}.
fn program() -> [u8; 16] {
    let mut insns = [0u8; 16];
    insns[0] = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
    insns[4..8].copy_from_slice(&1i32.to_ne_bytes());
    insns[8] = 0x95; // BPF_JMP | BPF_EXIT
    insns
}

/// The part of `union bpf_attr` `BPF_PROG_LOAD` reads (the kernel treats
/// the fields past `size_of` as zero).
#[repr(C, align(8))]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The loaded program; attach it to as many groups as needed.
pub struct Migration {
    program: OwnedFd,
}

impl Migration {
    pub fn load() -> io::Result<Migration> {
        let insns = program();
        let license = b"GPL\0";
        let mut name = [0u8; 16];
        name[..15].copy_from_slice(b"fortune_migrate");
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_SK_REUSEPORT,
            insn_cnt: (insns.len() / 8) as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: BPF_SK_REUSEPORT_SELECT_OR_MIGRATE,
        };
        // SAFETY: attr is a valid BPF_PROG_LOAD argument of the size given;
        // the buffers it points to outlive the call.
        #[allow(unsafe_code)]
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>() as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success bpf() returns a new descriptor, ours alone.
        #[allow(unsafe_code)]
        let program = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        Ok(Migration { program })
    }

    /// Turns migration on for the `SO_REUSEPORT` group `socket` listens in.
    pub fn attach(&self, socket: &impl AsRawFd) -> io::Result<()> {
        let fd: libc::c_int = self.program.as_raw_fd();
        // SAFETY: a valid descriptor and an int-sized option value.
        #[allow(unsafe_code)]
        let done = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_EBPF,
                &fd as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if done < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Whether the namespace already migrates for every group
/// (`net.ipv4.tcp_migrate_req=1`).
pub fn namespace_migrates() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_passes_and_exits() {
        let mut want = [0u8; 16];
        want[..8].copy_from_slice(&[0xb7, 0, 0, 0, 1, 0, 0, 0]);
        want[8] = 0x95;
        if cfg!(target_endian = "little") {
            assert_eq!(program(), want);
        }
        assert_eq!(std::mem::size_of::<ProgLoad>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoad, expected_attach_type), 68);
    }
}
