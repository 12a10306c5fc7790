; boot-marker.asm: a 512-byte boot sector that SeaBIOS boots from a floppy,
; from a hard disk (as its MBR) and from a CD (as an El Torito
; no-emulation boot image), and that proves it ran on the serial console.
;
; Build: nasm -f bin -D 'MARKER="mvisor-floppy"' -o boot.bin boot-marker.asm
; test/helpers/boot-images.ts builds it and puts it into floppy, disk and
; ISO images.
;
; Layout:
;   0x000  EB xx 90         jmp short + nop, as DOS boot sectors start
;   0x003  BPB              a FAT12 BIOS parameter block for a 1.44 MB
;                           floppy (DOS 4.0 extended BPB): some BIOSes and
;                           tools check that a floppy boot sector has one
;   0x03E  code, strings    must end before 0x1BE, where a disk's MBR has
;                           its partition table (the builder writes one)
;   0x1FE  55 AA            boot signature; SeaBIOS refuses a hard disk
;                           without it, and a floppy too unless CMOS 0x38
;                           bit 0 turns the check off
;
; Where it runs: the BIOS loads a floppy or disk boot sector at 0000:7C00
; and jumps there. For an El Torito no-emulation image ("El Torito"
; Bootable CD-ROM Format Specification 1.0, section 2.0 and 5.3) it loads
; the image at the catalog's load segment (0 means 07C0) and jumps to
; segment:0000, so CS:IP may be 07C0:0000 instead of 0000:7C00. The first
; jump is relative, so it works either way; a far jump then puts CS at 0
; and everything after it uses addresses relative to 0000:7C00.
;
; Then, as test/guests/option-rom/boot-marker.asm does:
;   (a) prints MARKER "\r\n" with INT 10h AH=0Eh (teletype). With no VGA and
;       fw_cfg "etc/sercon-port" present, SeaBIOS's serial console renders
;       that on the serial port; then waits for one timer tick (IRQ 0),
;       when SeaBIOS sends what its serial console held back;
;   (b) writes "SERIAL:" MARKER "\r\n" straight to COM1 (0x3F8), waiting
;       for LSR (0x3FD) bit 5 (THR empty) before each byte;
;   (c) resets the machine: RST_CPU|SYS_RST (0x06) to the reset control
;       register at 0xCF9 (PIIX3), then halts forever.

bits 16
cpu 386
org 0x7c00

%ifndef MARKER
%define MARKER "mvisor-boot"
%endif

COM1     equ 0x3f8
COM1_LSR equ COM1 + 5
LSR_THRE equ 0x20
RST_CNT  equ 0xcf9
PART_TABLE equ 0x1be

start:
        jmp short main
        nop
        ; BIOS parameter block: FAT12, 1.44 MB 3.5" floppy (2880 sectors,
        ; 18 per track, 2 heads), as mkfs.fat writes it.
        db "MVISOR  "                   ; 0x03 OEM name
        dw 512                          ; 0x0B bytes per sector
        db 1                            ; 0x0D sectors per cluster
        dw 1                            ; 0x0E reserved sectors
        db 2                            ; 0x10 FATs
        dw 224                          ; 0x11 root directory entries
        dw 2880                         ; 0x13 total sectors
        db 0xf0                         ; 0x15 media descriptor: 1.44 MB
        dw 9                            ; 0x16 sectors per FAT
        dw 18                           ; 0x18 sectors per track
        dw 2                            ; 0x1A heads
        dd 0                            ; 0x1C hidden sectors
        dd 0                            ; 0x20 total sectors (32-bit): unused
        db 0                            ; 0x24 drive number
        db 0                            ; 0x25 reserved
        db 0x29                         ; 0x26 extended boot signature
        dd 0x6d767372                   ; 0x27 volume serial number
        db "MVISORBOOT "                ; 0x2B volume label (11 bytes)
        db "FAT12   "                   ; 0x36 file system type (8 bytes)

main:                                   ; 0x3E
        jmp 0x0000:.flat                ; CS = 0, whichever way we came
.flat:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00                  ; stack below the boot sector
        sti                             ; INT 10h may rely on interrupts
        cld

        ; (a) BIOS teletype output, one character per INT 10h AH=0Eh
        mov si, marker_line
.tty:
        lodsb
        test al, al
        jz .flush
        mov ah, 0x0e
        mov bx, 0x0007                  ; page 0, light grey
        int 0x10
        jmp .tty

        ; SeaBIOS's serial console is lazy: it keeps the last character
        ; and the cursor move of the newline back, and sends them at its
        ; next timer tick (src/sercon.c, sercon_check_event from
        ; clock_update), or later when the UART's FIFO is full (QEMU's
        ; drains at the line rate). Wait 4 ticks (about 0.2 s), so the line
        ; is complete before (b) writes to the same port and (c) resets.
.flush:
        push ds
        push word 0x40
        pop ds
        mov bx, [0x6c]                  ; BDA timer tick count (low word)
.tick:
        hlt                             ; until an interrupt (IF is set)
        mov ax, [0x6c]
        sub ax, bx
        cmp ax, 4
        jb .tick
        pop ds

        ; (b) straight to the 16550 on COM1
.serial:
        mov si, serial_line
.byte:
        lodsb
        test al, al
        jz .reset
        mov ah, al
        mov dx, COM1_LSR
.wait:
        in al, dx
        test al, LSR_THRE
        jz .wait
        mov dx, COM1
        mov al, ah
        out dx, al
        jmp .byte

        ; (c) hard reset through the PIIX3 reset control register
.reset:
        mov dx, RST_CNT
        mov al, 0x06                    ; SYS_RST | RST_CPU
        out dx, al
        cli
.hang:
        hlt
        jmp .hang

marker_line:   db MARKER, 13, 10, 0
serial_line:   db "SERIAL:", MARKER, 13, 10, 0

code_end:
%if code_end - start > PART_TABLE
%error "boot sector code overlaps the partition table at 0x1BE (marker too long)"
%endif
        times PART_TABLE - (code_end - start) db 0
        times 64 db 0                   ; 0x1BE partition table (the disk builder fills it)
        db 0x55, 0xaa                   ; 0x1FE boot signature
