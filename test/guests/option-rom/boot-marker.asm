; boot-marker.asm: a legacy (ISA-style) x86 option ROM that SeaBIOS lists as
; a boot device and that, when booted, proves it ran on the serial console.
;
; Build: nasm -f bin -D 'MARKER="mvisor-boot-A"' [-D 'NAME="..."'] -o rom.bin
; then fix the checksum byte (last byte) so that all bytes sum to 0 mod 256;
; test/helpers/option-rom.ts does both and also fixes the $PnP header
; checksum.
;
; Layout (IBM PC option ROM convention; "BIOS Boot Specification" 1.01,
; appendix A for the PnP expansion header):
;   0x00  55 AA            signature
;   0x02  size             length in 512-byte blocks
;   0x03  init entry       far-called by the BIOS during POST; returns far
;   0x18  word 0           no PCI data structure (not a PCI ROM)
;   0x1A  word pnp         offset of the "$PnP" expansion header
;   pnp   $PnP header      32 bytes, with the product name and the BEV
;   ...   strings, BEV code
;   end   checksum byte    padding to a 512-byte multiple; last byte = checksum
;
; SeaBIOS (src/optionroms.c) calls the init entry of a ROM that has a $PnP
; header, then adds a boot entry for every header with a BEV; booting it is
; a far call to ROM segment:BEV, in real mode, interrupts enabled.
;
; The BEV:
;   (a) prints MARKER "\r\n" with INT 10h AH=0Eh (teletype). With no VGA and
;       fw_cfg "etc/sercon-port" present, SeaBIOS's serial console renders
;       that on the serial port;
;   (b) after 4 timer ticks (SeaBIOS flushes its serial console from the
;       timer), writes "SERIAL:" MARKER "\r\n" straight to COM1 (0x3F8),
;       waiting for LSR (0x3FD) bit 5 (THR empty) before each byte;
;   (c) resets the machine: RST_CPU|SYS_RST (0x06) to the reset control
;       register at 0xCF9 (PIIX3), then halts forever.

bits 16
cpu 386
org 0

%ifndef MARKER
%define MARKER "mvisor-boot"
%endif
%ifndef NAME
%define NAME "mvisor boot marker"
%endif

COM1     equ 0x3f8
COM1_LSR equ COM1 + 5
LSR_THRE equ 0x20
RST_CNT  equ 0xcf9

rom_start:
        db 0x55, 0xaa
        db rom_blocks                   ; patched by nasm below (rom_end)
init:                                   ; offset 3: init entry
        retf                            ; nothing to set up
        times 0x18 - ($ - rom_start) db 0
        dw 0                            ; 0x18: no PCI data structure
        dw pnp_header                   ; 0x1A: $PnP expansion header

        align 16, db 0
pnp_header:
        db "$PnP"                       ; 0x00 signature
        db 0x01                         ; 0x04 structure revision
        db 0x02                         ; 0x05 length in 16-byte units (32)
        dw 0                            ; 0x06 next header: none
        db 0                            ; 0x08 reserved
        db 0                            ; 0x09 header checksum (set by the builder)
        dd 0                            ; 0x0A device identifier
        dw manufacturer                 ; 0x0E manufacturer string
        dw product_name                 ; 0x10 product name string (boot menu text)
        db 0x08, 0x80, 0x00             ; 0x12 device type: system peripheral, other
        db 0x24                         ; 0x15 indicators: IPL device, shadowable
        dw 0                            ; 0x16 BCV: none (not a disk controller)
        dw 0                            ; 0x18 DV: none
        dw bev                          ; 0x1A BEV: boot by far call here
        dw 0                            ; 0x1C reserved
        dw 0                            ; 0x1E static resource info: none

manufacturer:  db "mvisor", 0
product_name:  db NAME, 0
marker_line:   db MARKER, 13, 10, 0
serial_line:   db "SERIAL:", MARKER, 13, 10, 0

bev:
        push cs
        pop ds
        cld
        sti                             ; INT 10h may rely on interrupts

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

        ; SeaBIOS's serial console is lazy: it keeps the end of the line
        ; back and sends it from its timer tick (src/sercon.c,
        ; sercon_check_event), or later when the UART's FIFO is full
        ; (QEMU's drains at the line rate). Wait 4 ticks (about 0.2 s), so
        ; the line is complete before (b) writes to the same port.
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

code_end:
        ; pad to a 512-byte multiple, leaving the last byte for the checksum
        times ((code_end - rom_start + 1 + 511) / 512) * 512 - 1 - (code_end - rom_start) db 0
checksum:
        db 0                            ; set by the builder
rom_end:
rom_blocks equ (rom_end - rom_start) / 512
