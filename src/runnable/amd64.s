# ready: the entrypoint of runnable mock images (x86_64 Linux).
#
#   ready [READY_LINE [LIST_FILE]]
#
# Blocks SIGTERM, SIGINT and SIGPIPE. If LIST_FILE is given and non-empty, it
# holds absolute paths, one per line, each ending in "\n": every one is opened
# and read to its end (the data is discarded), then stdout gets
# "read N files, M bytes\n". A path that cannot be opened: stderr gets
# "ready: cannot open PATH\n", exit status 1 ("cannot read" for a read error).
# Then READY_LINE (default "ready") and "\n" go to stdout in one write, and
# the program waits for SIGTERM or SIGINT, on which it exits 0.
#
# Freestanding: raw syscalls, no libc, a static ET_EXEC. Built by build.sh:
#   as --64 amd64.s; ld -static -s --build-id=none (flags and why: build.sh)
# and the committed ready-amd64 must match its output (.ci/runnable).

	.set SYS_read, 0
	.set SYS_write, 1
	.set SYS_close, 3
	.set SYS_rt_sigprocmask, 14
	.set SYS_writev, 20
	.set SYS_rt_sigtimedwait, 128
	.set SYS_exit_group, 231
	.set SYS_openat, 257

	.set AT_FDCWD, -100
	.set O_RDONLY, 0
	.set SIG_BLOCK, 0
	.set EINTR, 4
	.set SIGSETSIZE, 8
	.set SIGINT, 2
	.set SIGPIPE, 13
	.set SIGTERM, 15
	# Lines are at most 4095 bytes, so a cut line always fits beside room to read.
	.set LIST_BUF, 65536
	.set SCRATCH, 65536
	.set PREFIX_LEN, 19		# both "ready: cannot open " and "... read "

	.section .rodata
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
count_line:	.skip 64		# "read " 20 digits " files, " 20 digits " bytes\n"
digits:		.skip 20
digits_end:

# Registers kept across the program (the kernel preserves all but rax, rcx, r11):
#   rbp  argc, then argv[]        r13  list fd, -1 once the list is at its end
#   r14  bytes held in list_buf   r15  files read     rbx  bytes read
#   r8   start of the current line   r9  scan cursor   r10  end of held bytes
#   r12  fd of the listed file being read
	.text
	.globl _start
_start:
	# First of all: as PID 1 a signal left at its default disposition is
	# dropped, so SIGTERM and SIGINT are only ever seen by waiting for them
	# blocked. SIGPIPE is blocked so a closed stdout fails a write with EPIPE
	# rather than killing the program.
	mov $SYS_rt_sigprocmask, %eax
	mov $SIG_BLOCK, %edi
	lea blocked(%rip), %rsi
	xor %edx, %edx
	mov $SIGSETSIZE, %r10d
	syscall

	mov %rsp, %rbp
	cmpq $3, (%rbp)
	jb ready
	mov 24(%rbp), %rdi		# argv[2], LIST_FILE
	cmpb $0, (%rdi)
	je ready

list:
	mov $SYS_openat, %eax
	mov %rdi, %rsi
	mov $AT_FDCWD, %rdi
	mov $O_RDONLY, %edx
	syscall
	test %rax, %rax
	js .Llist_open_failed
	mov %rax, %r13
	xor %r14d, %r14d
	xor %r15d, %r15d
	xor %ebx, %ebx
.Lfill:
	cmp $LIST_BUF, %r14
	je .Llist_read_failed		# a line longer than the buffer
	mov $SYS_read, %eax
	mov %r13, %rdi
	lea list_buf(%rip), %rsi
	add %r14, %rsi
	mov $LIST_BUF, %edx
	sub %r14, %rdx
	syscall
	cmp $-EINTR, %rax
	je .Lfill
	test %rax, %rax
	js .Llist_read_failed
	jz .Lend
	add %rax, %r14
	jmp .Lscan
.Lend:
	mov $SYS_close, %eax
	mov %r13, %rdi
	syscall
	mov $-1, %r13
	test %r14, %r14
	jz .Lscan
	# A last line without its newline still names a file.
	lea list_buf(%rip), %rsi
	movb $'\n', (%rsi,%r14)
	inc %r14
.Lscan:
	lea list_buf(%rip), %r8
	mov %r8, %r9
	lea (%r8,%r14), %r10
.Lnext:
	cmp %r10, %r9
	je .Lkeep
	cmpb $'\n', (%r9)
	jne .Lnext_byte
	movb $0, (%r9)			# the path is opened where it lies
	call read_file
	lea 1(%r9), %r8
.Lnext_byte:
	inc %r9
	jmp .Lnext
.Lkeep:
	# The line cut by the end of this read moves to the front, where the
	# next read continues it.
	mov %r10, %rcx
	sub %r8, %rcx
	mov %rcx, %r14
	mov %r8, %rsi
	lea list_buf(%rip), %rdi
	rep movsb
	test %r13, %r13
	jns .Lfill

	lea count_line(%rip), %rdi
	lea s_read(%rip), %rsi
	mov $5, %edx
	call append
	mov %r15, %rax
	call put_dec
	lea s_files(%rip), %rsi
	mov $8, %edx
	call append
	mov %rbx, %rax
	call put_dec
	lea s_bytes(%rip), %rsi
	mov $7, %edx
	call append
	mov %rdi, %rdx
	lea count_line(%rip), %rsi
	sub %rsi, %rdx
	mov $1, %edi
	call write_all

ready:
	cmpq $2, (%rbp)
	jb .Ldefault
	# The argument's NUL becomes the newline for the one write, then comes
	# back, so /proc/PID/cmdline is left as it was.
	mov 16(%rbp), %rdi		# argv[1], READY_LINE
	call strlen
	lea (%rdi,%rax), %r8
	movb $'\n', (%r8)
	mov %rdi, %rsi
	lea 1(%rax), %rdx
	mov $1, %edi
	call write_all
	movb $0, (%r8)
	jmp wait
.Ldefault:
	lea default_line(%rip), %rsi
	mov $6, %edx
	mov $1, %edi
	call write_all

wait:
	mov $SYS_rt_sigtimedwait, %eax
	lea awaited(%rip), %rdi
	xor %esi, %esi
	xor %edx, %edx
	mov $SIGSETSIZE, %r10d
	syscall
	# An error here is EINTR or EAGAIN; a signal can only be one of awaited.
	test %rax, %rax
	jle wait
	xor %edi, %edi
exit:
	mov $SYS_exit_group, %eax
	syscall

.Llist_open_failed:
	mov 24(%rbp), %rdi
	jmp open_failed
.Llist_read_failed:
	mov 24(%rbp), %rdi
	jmp read_failed

# read_file: r8 the path. Reads it to its end, counting into r15 and rbx.
read_file:
	mov $SYS_openat, %eax
	mov $AT_FDCWD, %rdi
	mov %r8, %rsi
	mov $O_RDONLY, %edx
	syscall
	mov %r8, %rdi
	test %rax, %rax
	js open_failed
	mov %rax, %r12
1:	mov $SYS_read, %eax
	mov %r12, %rdi
	lea scratch(%rip), %rsi
	mov $SCRATCH, %edx
	syscall
	cmp $-EINTR, %rax
	je 1b
	test %rax, %rax
	jz 2f
	mov %r8, %rdi
	js read_failed
	add %rax, %rbx
	jmp 1b
2:	mov $SYS_close, %eax
	mov %r12, %rdi
	syscall
	inc %r15
	ret

# open_failed, read_failed: rdi the path. Say so on stderr and exit 1.
open_failed:
	lea msg_open(%rip), %rsi
	jmp die
read_failed:
	lea msg_read(%rip), %rsi
die:
	call strlen
	# The iovec, from its last entry down: {prefix, path, "\n"}.
	push $1
	lea newline(%rip), %rcx
	push %rcx
	push %rax
	push %rdi
	push $PREFIX_LEN
	push %rsi
	mov $SYS_writev, %eax
	mov $2, %edi
	mov %rsp, %rsi
	mov $3, %edx
	syscall				# best effort: there is nothing left to tell
	mov $1, %edi
	jmp exit

# write_all: rdi fd, rsi bytes, rdx length. Gives up silently on an error:
# a reader that went away (EPIPE) must not stop the wait that follows.
write_all:
	test %rdx, %rdx
	jz 1f
	mov $SYS_write, %eax
	syscall
	cmp $-EINTR, %rax
	je write_all
	test %rax, %rax
	jle 1f
	add %rax, %rsi
	sub %rax, %rdx
	jmp write_all
1:	ret

# strlen: rdi a string. rax its length.
strlen:
	mov %rdi, %rax
1:	cmpb $0, (%rax)
	je 2f
	inc %rax
	jmp 1b
2:	sub %rdi, %rax
	ret

# append: rdi destination, rsi bytes, rdx length. rdi moves past them.
append:
	mov %rdx, %rcx
	rep movsb
	ret

# put_dec: rdi destination, rax a number. Its decimal digits are appended.
put_dec:
	lea digits_end(%rip), %rsi
	mov $10, %ecx
1:	xor %edx, %edx
	div %rcx
	add $'0', %dl
	dec %rsi
	mov %dl, (%rsi)
	test %rax, %rax
	jnz 1b
	lea digits_end(%rip), %rdx
	sub %rsi, %rdx
	jmp append

	.section .note.GNU-stack, "", @progbits
