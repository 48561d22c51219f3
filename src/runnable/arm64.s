// ready: the entrypoint of runnable mock images (aarch64 Linux).
//
//   ready [READY_LINE [LIST_FILE]]
//
// Blocks SIGTERM, SIGINT and SIGPIPE. If LIST_FILE is given and non-empty, it
// holds absolute paths, one per line, each ending in "\n": every one is opened
// and read to its end (the data is discarded), then stdout gets
// "read N files, M bytes\n". A path that cannot be opened: stderr gets
// "ready: cannot open PATH\n", exit status 1 ("cannot read" for a read error).
// Then READY_LINE (default "ready") and "\n" go to stdout in one write, and
// the program waits for SIGTERM or SIGINT, on which it exits 0.
//
// Freestanding: raw syscalls, no libc, a static ET_EXEC. Built by build.sh:
//   aarch64-linux-gnu-as arm64.s; aarch64-linux-gnu-ld -static -s --build-id=none
//   (flags and why: build.sh)
// and the committed ready-arm64 must match its output (.ci/runnable).
// Kept step for step parallel to amd64.s, with the same labels.

	.set SYS_openat, 56
	.set SYS_close, 57
	.set SYS_read, 63
	.set SYS_write, 64
	.set SYS_writev, 66
	.set SYS_exit_group, 94
	.set SYS_rt_sigprocmask, 135
	.set SYS_rt_sigtimedwait, 137

	.set AT_FDCWD, -100
	.set O_RDONLY, 0
	.set SIG_BLOCK, 0
	.set EINTR, 4
	.set SIGSETSIZE, 8
	.set SIGINT, 2
	.set SIGPIPE, 13
	.set SIGTERM, 15
	// Lines are at most 4095 bytes, so a cut line always fits beside room to read.
	.set LIST_BUF, 65536
	.set SCRATCH, 65536
	.set PREFIX_LEN, 19		// both "ready: cannot open " and "... read "

	.section .rodata
	.balign 8
blocked:	.quad (1 << (SIGINT - 1)) | (1 << (SIGPIPE - 1)) | (1 << (SIGTERM - 1))
awaited:	.quad (1 << (SIGINT - 1)) | (1 << (SIGTERM - 1))
default_line:	.ascii "ready\n"
msg_open:	.ascii "ready: cannot open "
msg_read:	.ascii "ready: cannot read "
newline:	.ascii "\n"
s_read:		.ascii "read "
s_files:	.ascii " files, "
s_bytes:	.ascii " bytes\n"

	.bss
	.balign 16
list_buf:	.skip LIST_BUF
scratch:	.skip SCRATCH
count_line:	.skip 64		// "read " 20 digits " files, " 20 digits " bytes\n"
digits:		.skip 20
digits_end:

// Loads the address of a symbol; the linker resolves both halves, so the
// static executable carries no relocations.
	.macro adrl reg, sym
	adrp \reg, \sym
	add \reg, \reg, :lo12:\sym
	.endm

// Registers kept across the program (the kernel preserves all but x0):
//   x19  argc, then argv[]        x20  list fd, -1 once the list is at its end
//   x21  bytes held in list_buf   x22  files read     x23  bytes read
//   x24  start of the current line   x25  scan cursor   x26  end of held bytes
//   x27  fd of the listed file being read
	.text
	.globl _start
_start:
	// First of all: as PID 1 a signal left at its default disposition is
	// dropped, so SIGTERM and SIGINT are only ever seen by waiting for them
	// blocked. SIGPIPE is blocked so a closed stdout fails a write with EPIPE
	// rather than killing the program.
	mov x8, #SYS_rt_sigprocmask
	mov x0, #SIG_BLOCK
	adrl x1, blocked
	mov x2, #0
	mov x3, #SIGSETSIZE
	svc #0

	mov x19, sp
	ldr x0, [x19]
	cmp x0, #3
	b.lo ready
	ldr x0, [x19, #24]		// argv[2], LIST_FILE
	ldrb w1, [x0]
	cbz w1, ready

list:
	mov x8, #SYS_openat
	mov x1, x0
	mov x0, #AT_FDCWD
	mov x2, #O_RDONLY
	svc #0
	tbnz x0, #63, .Llist_open_failed
	mov x20, x0
	mov x21, #0
	mov x22, #0
	mov x23, #0
.Lfill:
	cmp x21, #LIST_BUF
	b.eq .Llist_read_failed		// a line longer than the buffer
	mov x8, #SYS_read
	mov x0, x20
	adrl x1, list_buf
	add x1, x1, x21
	mov x2, #LIST_BUF
	sub x2, x2, x21
	svc #0
	cmn x0, #EINTR
	b.eq .Lfill
	tbnz x0, #63, .Llist_read_failed
	cbz x0, .Lend
	add x21, x21, x0
	b .Lscan
.Lend:
	mov x8, #SYS_close
	mov x0, x20
	svc #0
	mov x20, #-1
	cbz x21, .Lscan
	// A last line without its newline still names a file.
	adrl x1, list_buf
	mov w2, #'\n'
	strb w2, [x1, x21]
	add x21, x21, #1
.Lscan:
	adrl x24, list_buf
	mov x25, x24
	add x26, x24, x21
.Lnext:
	cmp x25, x26
	b.eq .Lkeep
	ldrb w0, [x25]
	cmp w0, #'\n'
	b.ne .Lnext_byte
	strb wzr, [x25]			// the path is opened where it lies
	bl read_file
	add x24, x25, #1
.Lnext_byte:
	add x25, x25, #1
	b .Lnext
.Lkeep:
	// The line cut by the end of this read moves to the front, where the
	// next read continues it.
	sub x21, x26, x24
	adrl x0, list_buf
	mov x1, x24
	mov x2, x21
	bl append
	tbz x20, #63, .Lfill

	adrl x0, count_line
	adrl x1, s_read
	mov x2, #5
	bl append
	mov x1, x22
	bl put_dec
	adrl x1, s_files
	mov x2, #8
	bl append
	mov x1, x23
	bl put_dec
	adrl x1, s_bytes
	mov x2, #7
	bl append
	adrl x1, count_line
	sub x2, x0, x1
	mov x0, #1
	bl write_all

ready:
	ldr x0, [x19]
	cmp x0, #2
	b.lo .Ldefault
	// The argument's NUL becomes the newline for the one write, then comes
	// back, so /proc/PID/cmdline is left as it was.
	ldr x0, [x19, #16]		// argv[1], READY_LINE
	bl strlen
	add x24, x0, x1
	mov w2, #'\n'
	strb w2, [x24]
	add x2, x1, #1
	mov x1, x0
	mov x0, #1
	bl write_all
	strb wzr, [x24]
	b wait
.Ldefault:
	adrl x1, default_line
	mov x2, #6
	mov x0, #1
	bl write_all

wait:
	mov x8, #SYS_rt_sigtimedwait
	adrl x0, awaited
	mov x1, #0
	mov x2, #0
	mov x3, #SIGSETSIZE
	svc #0
	// An error here is EINTR or EAGAIN; a signal can only be one of awaited.
	cmp x0, #0
	b.le wait
	mov x0, #0
exit:
	mov x8, #SYS_exit_group
	svc #0

.Llist_open_failed:
	ldr x0, [x19, #24]
	b open_failed
.Llist_read_failed:
	ldr x0, [x19, #24]
	b read_failed

// read_file: x24 the path. Reads it to its end, counting into x22 and x23.
read_file:
	mov x8, #SYS_openat
	mov x0, #AT_FDCWD
	mov x1, x24
	mov x2, #O_RDONLY
	svc #0
	tbnz x0, #63, 3f
	mov x27, x0
1:	mov x8, #SYS_read
	mov x0, x27
	adrl x1, scratch
	mov x2, #SCRATCH
	svc #0
	cmn x0, #EINTR
	b.eq 1b
	cbz x0, 2f
	tbnz x0, #63, 4f
	add x23, x23, x0
	b 1b
2:	mov x8, #SYS_close
	mov x0, x27
	svc #0
	add x22, x22, #1
	ret
3:	mov x0, x24
	b open_failed
4:	mov x0, x24
	b read_failed

// open_failed, read_failed: x0 the path. Say so on stderr and exit 1.
open_failed:
	adrl x2, msg_open
	b die
read_failed:
	adrl x2, msg_read
die:
	bl strlen
	// The iovec, from its last entry down: {prefix, path, "\n"}.
	adrl x3, newline
	mov x4, #1
	stp x3, x4, [sp, #-16]!
	stp x0, x1, [sp, #-16]!
	mov x4, #PREFIX_LEN
	stp x2, x4, [sp, #-16]!
	mov x8, #SYS_writev
	mov x0, #2
	mov x1, sp
	mov x2, #3
	svc #0				// best effort: there is nothing left to tell
	mov x0, #1
	b exit

// write_all: x0 fd, x1 bytes, x2 length. Gives up silently on an error:
// a reader that went away (EPIPE) must not stop the wait that follows.
write_all:
	mov x3, x0
1:	cbz x2, 2f
	mov x8, #SYS_write
	mov x0, x3
	svc #0
	cmn x0, #EINTR
	b.eq 1b
	cmp x0, #0
	b.le 2f
	add x1, x1, x0
	sub x2, x2, x0
	b 1b
2:	ret

// strlen: x0 a string. x1 its length.
strlen:
	mov x1, x0
1:	ldrb w3, [x1]
	cbz w3, 2f
	add x1, x1, #1
	b 1b
2:	sub x1, x1, x0
	ret

// append: x0 destination, x1 bytes, x2 length. x0 moves past them.
append:
	cbz x2, 2f
1:	ldrb w3, [x1], #1
	strb w3, [x0], #1
	subs x2, x2, #1
	b.ne 1b
2:	ret

// put_dec: x0 destination, x1 a number. Its decimal digits are appended.
put_dec:
	adrl x2, digits_end
	mov x4, #10
1:	udiv x5, x1, x4
	msub x6, x5, x4, x1
	add w6, w6, #'0'
	strb w6, [x2, #-1]!
	mov x1, x5
	cbnz x1, 1b
	mov x1, x2
	adrl x2, digits_end
	sub x2, x2, x1
	b append

	.section .note.GNU-stack, "", %progbits
