; disk-check.asm: a disk workload that SeaBIOS boots from an ATA disk (as
; its MBR plus a second stage) and that does all its disk I/O through the
; BIOS's INT 13h, so every request goes through the VMM's IDE device model.
; test/integration/snapshot-bios.test.ts snapshots it mid-run and restores
; it in a new process.
;
; Build: nasm -f bin -D ROUNDS=16 -D SECTORS=4 -o disk-check.bin disk-check.asm
; (ROUNDS 1..255, SECTORS per round 1..128). test/helpers/boot-images.ts
; (diskCheckDisk) builds it and puts it at the start of a raw disk image;
; its diskCheckModel computes what the guest prints and writes.
;
; The binary, and the disk it goes on (LBA = 512-byte sectors):
;   LBA 0          the MBR: loads the second stage with INT 13h AH=42h and
;                  jumps to it; partition table at 0x1BE (the builder fills
;                  it), 55 AA at 0x1FE
;   LBA 1..        the second stage (STAGE2_SECTORS sectors, at 0000:7E00)
;   LBA 63         the journal sector (zeros on the fresh disk): dword 0,
;                  the number of rounds done; dword 4, a running hash of
;                  their sums
;   LBA 2048 + i*SECTORS, i = 0..ROUNDS: region R_i of SECTORS sectors; the
;                  builder fills R_0 with a pattern
;
; Round r (r = 0..ROUNDS-1):
;   1. reads R_r (SECTORS sectors) into 1000:0000 (AH=42h);
;   2. sums it: s = rol16(s, 1) + w over its words, s starting at 0;
;   3. transforms it in place: w = rol16(w, 3) xor k over its words, k
;      starting at s xor (r * 0x0101), then k += 0x9E37 after each word;
;   4. writes it to R_{r+1} (AH=43h), reads R_{r+1} back into 2000:0000 and
;      compares the two (so round r+1 reads what round r wrote);
;   5. reads the journal, checks that it counts r rounds, counts this one,
;      hash = rol32(hash, 5) xor s, and writes it back;
;   6. prints "round <r, decimal> sum <s, 4 hex digits>" straight to COM1.
; Then "disk-check done", and a reset through the PIIX3's 0xCF9 (mvisor's
; onReset: exit ends the VMM with code 0). Any INT 13h that returns with CF
; set, a verify or a journal mismatch prints "disk-check error: ..." and
; writes 1 to isa-debug-exit (port 0x501: exit code 3), then halts.

bits 16
cpu 386
org 0x7c00

%ifndef ROUNDS
%define ROUNDS 16
%endif

%ifndef SECTORS
%define SECTORS 4                       ; per round (at most 128: 64 KiB, one segment)
%endif
%if ROUNDS < 1 || ROUNDS > 255 || SECTORS < 1 || SECTORS > 128
%error "ROUNDS must be 1..255 and SECTORS 1..128"
%endif
WORDS       equ SECTORS * 256
DATA_LBA    equ 2048
JOURNAL_LBA equ 63
BUF_SEG     equ 0x1000                  ; the round's data
CHK_SEG     equ 0x2000                  ; what was read back
JBUF        equ 0x0600                  ; the journal sector, at 0000:0600

COM1        equ 0x3f8
COM1_LSR    equ COM1 + 5
LSR_THRE    equ 0x20
RST_CNT     equ 0xcf9
DEBUG_EXIT  equ 0x501
PART_TABLE  equ 0x1be

; ---------------------------------------------------------------------------
; The MBR.

start:
        jmp 0x0000:flat                 ; CS = 0
flat:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00                  ; stack below the MBR
        sti
        cld
        mov [boot_drive], dl            ; SeaBIOS's boot drive (0x80)

        mov si, dap
        mov word [si + 2], STAGE2_SECTORS
        mov word [si + 4], stage2       ; 0000:7E00
        mov word [si + 6], 0
        mov dword [si + 8], 1
        mov byte [what], 'L'
        mov ah, 0x42
        call int13
        jmp stage2

; INT 13h AH (42h read, 43h write) with the DAP at `dap`; on CF, prints an
; error line naming `what`, the round and AH, and ends the VM.
int13:
        push si
        mov si, dap
        mov dl, [boot_drive]
        mov al, 0
        int 0x13
        pop si
        jc .err
        ret
.err:
        mov bl, ah
        mov si, msg_error
        call puts
        mov al, [what]
        call putc
        mov si, msg_ah
        call puts
        mov al, bl
        call puthex8
        mov si, msg_round
        call puts
        mov ax, [round]
        call putdec
        jmp fail

; Prints the NUL-terminated string at DS:SI straight to COM1.
puts:
        lodsb
        test al, al
        jz .done
        call putc
        jmp puts
.done:
        ret

; Writes AL to COM1 once its transmit holding register is empty.
putc:
        push dx
        push ax
        mov dx, COM1_LSR
.wait:
        in al, dx
        test al, LSR_THRE
        jz .wait
        pop ax
        mov dx, COM1
        out dx, al
        pop dx
        ret

; AL as two hex digits.
puthex8:
        push ax
        shr al, 4
        call .digit
        pop ax
.digit:
        and al, 0x0f
        add al, '0'
        cmp al, '9'
        jbe .out
        add al, 'A' - '0' - 10
.out:
        jmp putc

; Ends the line, tells isa-debug-exit (exit code 3), halts.
fail:
        mov si, msg_crlf
        call puts
        mov dx, DEBUG_EXIT
        mov al, 1
        out dx, al
        cli
.hang:
        hlt
        jmp .hang

; AX in decimal.
putdec:
        push cx
        push dx
        push bx
        mov bx, 10
        xor cx, cx
.div:
        xor dx, dx
        div bx
        push dx
        inc cx
        test ax, ax
        jnz .div
.out:
        pop ax
        add al, '0'
        call putc
        loop .out
        pop bx
        pop dx
        pop cx
        ret

msg_error:  db "disk-check error: int13 ", 0
msg_ah:     db " ah=", 0
msg_round:  db " round ", 0
msg_crlf:   db 13, 10, 0

; Variables, in the MBR's sector: the second stage's are overwritten as it loads.
        align 4
dap:                                    ; the INT 13h extensions' disk address packet
        db 0x10, 0                      ; size, reserved
        dw 0                            ; sectors
        dw 0, 0                         ; buffer offset, segment
        dq 0                            ; LBA
round:      dw 0                        ; the round (r)
sum:        dw 0                        ; its sum (s)
boot_drive: db 0
what:       db 0                        ; the request, for error lines: L(oad), R, W, V, J, K

mbr_end:
%if mbr_end - start > PART_TABLE
%error "MBR code overlaps the partition table at 0x1BE"
%endif
        times PART_TABLE - (mbr_end - start) db 0
        times 64 db 0                   ; 0x1BE partition table (the builder fills it)
        db 0x55, 0xaa                   ; 0x1FE boot signature

; ---------------------------------------------------------------------------
; The second stage, at 0000:7E00 (LBA 1..).

stage2:
        ; SeaBIOS's serial console may still hold back the end of "Booting
        ; from Hard Disk..." and sends it at its next timer tick: wait 4
        ; ticks (about 0.2 s) so no line of ours is cut by it.
        push ds
        push word 0x40
        pop ds
        mov bx, [0x6c]                  ; BDA timer tick count (low word)
.tick:
        hlt
        mov ax, [0x6c]
        sub ax, bx
        cmp ax, 4
        jb .tick
        pop ds

        mov si, msg_start
        call puts
        mov ax, ROUNDS
        call putdec
        mov si, msg_crlf
        call puts
        mov word [round], 0

round_loop:
        ; 1. R_r into BUF_SEG
        mov ax, [round]
        call region_lba
        mov word [dap + 6], BUF_SEG
        mov byte [what], 'R'
        mov ah, 0x42
        call int13

        ; 2. the sum
        push ds
        push word BUF_SEG
        pop ds
        xor si, si
        xor bx, bx
        mov cx, WORDS
.sum:
        lodsw
        rol bx, 1
        add bx, ax
        loop .sum
        pop ds
        mov [sum], bx

        ; 3. the transform, in place
        mov ax, [round]
        mov dx, 0x0101
        mul dx                          ; AX = r * 0x0101 (r < 256)
        xor ax, [sum]
        mov dx, ax                      ; DX = k
        push ds
        push word BUF_SEG
        pop ds
        xor si, si
        mov cx, WORDS
.xform:
        mov ax, [si]
        rol ax, 3
        xor ax, dx
        mov [si], ax
        add dx, 0x9e37
        add si, 2
        loop .xform
        pop ds

        ; 4. to R_{r+1}, read back into CHK_SEG, compare
        mov ax, [round]
        inc ax
        call region_lba
        mov word [dap + 6], BUF_SEG
        mov byte [what], 'W'
        mov ah, 0x43
        call int13
        mov ax, [round]
        inc ax
        call region_lba
        mov word [dap + 6], CHK_SEG
        mov byte [what], 'V'
        mov ah, 0x42
        call int13
        push ds
        push es
        push word BUF_SEG
        pop ds
        push word CHK_SEG
        pop es
        xor si, si
        xor di, di
        mov cx, WORDS
        repe cmpsw
        pop es
        pop ds
        je .journal
        mov si, msg_verify
        jmp error_round

.journal:
        ; 5. the journal: count this round, hash its sum
        mov si, dap
        mov word [si + 2], 1
        mov word [si + 4], JBUF
        mov word [si + 6], 0
        mov dword [si + 8], JOURNAL_LBA
        mov byte [what], 'J'
        mov ah, 0x42
        call int13
        movzx eax, word [round]
        cmp [JBUF], eax
        je .count
        mov si, msg_journal
        jmp error_round
.count:
        inc dword [JBUF]
        mov eax, [JBUF + 4]
        rol eax, 5
        movzx edx, word [sum]
        xor eax, edx
        mov [JBUF + 4], eax
        mov si, dap
        mov word [si + 2], 1            ; the BIOS wrote back what it read
        mov byte [what], 'K'
        mov ah, 0x43
        call int13

        ; 6. the line
        mov si, msg_round_line
        call puts
        mov ax, [round]
        call putdec
        mov si, msg_sum
        call puts
        mov ax, [sum]
        xchg al, ah
        call puthex8
        mov al, ah
        call puthex8
        mov si, msg_crlf
        call puts

        inc word [round]
        cmp word [round], ROUNDS
        jb round_loop

        mov si, msg_done
        call puts
        ; Hard reset through the PIIX3 reset control register.
        mov dx, RST_CNT
        mov al, 0x06                    ; SYS_RST | RST_CPU
        out dx, al
        cli
.hang:
        hlt
        jmp .hang

; "disk-check error: <SI> round <r>" and the end.
error_round:
        push si
        mov si, msg_error_plain
        call puts
        pop si
        call puts
        mov si, msg_round
        call puts
        mov ax, [round]
        call putdec
        jmp fail

; Sets the DAP to SECTORS sectors at region R_AX (buffer offset 0).
region_lba:
        mov si, dap
        mov word [si + 2], SECTORS
        mov word [si + 4], 0
        mov dx, SECTORS
        mul dx                          ; DX:AX = i * SECTORS
        add ax, DATA_LBA
        adc dx, 0
        mov [si + 8], ax
        mov [si + 10], dx
        mov dword [si + 12], 0
        ret

msg_start:       db "disk-check start rounds ", 0
msg_round_line:  db "round ", 0
msg_sum:         db " sum ", 0
msg_done:        db "disk-check done", 13, 10, 0
msg_error_plain: db "disk-check error: ", 0
msg_verify:      db "read-back differs from what was written", 0
msg_journal:     db "journal does not count the rounds done", 0

stage2_end:
        times (512 - (stage2_end - stage2) % 512) % 512 db 0
STAGE2_SECTORS equ (stage2_end - stage2 + 511) / 512
