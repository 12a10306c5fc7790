; multiboot.asm: the option ROM with which SeaBIOS boots a multiboot kernel
; (`firmware: bios` plus `kernel:` in the VMM config), as QEMU's -kernel does
; with its own multiboot ROM: the BIOS runs first (POST, PIC, PIT, IVT, PCI
; resources, ACPI tables), then the kernel starts in 32-bit protected mode
; with EAX = 0x2BADB002 and EBX = the multiboot information.
;
; Build: nasm -f bin -o multiboot.bin multiboot.asm; the VMM fixes the $PnP
; and ROM checksums when it offers the ROM (src/vmm/firmware/option-rom.ts).
; scripts/build-roms.mjs turns the result into multiboot-rom.ts; a unit test
; checks that the two agree.
;
; The VMM (src/vmm/firmware/multiboot-rom.ts) plans the load and offers two
; fw_cfg files:
;   etc/mvisor/multiboot       the plan, little endian:
;       +0  u32 magic "MVMB"
;       +4  u32 entry point (physical)
;       +8  u32 multiboot_info (physical, below 640 KiB)
;       +12 u32 memory map (physical, below 640 KiB): entries of 24 bytes
;       +16 u32 memory map capacity (entries)
;       +20 u16 fw_cfg selector of the data file
;       +22 u16 number of chunks (at most MAX_CHUNKS)
;       +24 chunks: u32 destination, u32 length
;   etc/mvisor/multiboot-data  the chunks' bytes, one after another
;
; The BEV (booted by SeaBIOS as a far call, real mode):
;   1. finds the plan in the fw_cfg file directory (selector 0x19) and reads it;
;   2. copies each chunk with one fw_cfg DMA read (the data file stays
;      selected, so each read continues where the last one ended);
;   3. replaces the memory map with what INT 15h E820 reports (SeaBIOS adds
;      its own reservations), and sets mem_lower (INT 12h) and mem_upper;
;   4. enters flat 32-bit protected mode (its own GDT) and jumps to the entry.
; On a failure it prints why through INT 10h and returns to the BIOS, which
; tries the next boot device.

bits 16
cpu 686
org 0

FW_CFG_SEL        equ 0x510
FW_CFG_DATA       equ 0x511
FW_CFG_DMA_HIGH   equ 0x514
FW_CFG_DMA_LOW    equ 0x518
FW_CFG_FILE_DIR   equ 0x19
DMA_CTL_ERROR     equ 0x01
DMA_CTL_READ      equ 0x02

PLAN_MAGIC        equ 0x424d564d        ; "MVMB"
MAX_CHUNKS        equ 32
PLAN_MAX          equ 24 + 8 * MAX_CHUNKS
MB_MAGIC          equ 0x2badb002
MBI_MEM_LOWER     equ 4
MBI_MEM_UPPER     equ 8
MBI_MMAP_LENGTH   equ 44
SMAP              equ 0x534d4150

; The frame on the stack (SS:BP).
F_DESC            equ 0                 ; fw_cfg DMA descriptor (16 bytes); later the GDTR
F_ENTRY           equ 16                ; one directory entry (64 bytes)
F_PLAN            equ 80                ; the plan (PLAN_MAX bytes)
FRAME             equ F_PLAN + PLAN_MAX

rom_start:
        db 0x55, 0xaa
        db rom_blocks
init:                                   ; offset 3: init entry, far-called during POST
        retf
        times 0x18 - ($ - rom_start) db 0
        dw 0                            ; 0x18: no PCI data structure
        dw pnp_header                   ; 0x1A: $PnP expansion header

        align 16, db 0
pnp_header:
        db "$PnP"
        db 0x01                         ; structure revision
        db 0x02                         ; length: 2 x 16 bytes
        dw 0                            ; next header: none
        db 0
        db 0                            ; checksum (set by the VMM)
        dd 0                            ; device identifier
        dw manufacturer
        dw product_name
        db 0x08, 0x80, 0x00             ; device type: system peripheral, other
        db 0x24                         ; indicators: IPL device, shadowable
        dw 0                            ; BCV: none
        dw 0                            ; DV: none
        dw bev                          ; BEV
        dw 0
        dw 0

manufacturer:   db "mvisor", 0
product_name:   db "mvisor multiboot kernel", 0
plan_name:      db "etc/mvisor/multiboot", 0
plan_name_len   equ $ - plan_name
msg_no_plan:    db "mvisor multiboot: no etc/mvisor/multiboot in fw_cfg", 13, 10, 0
msg_bad_plan:   db "mvisor multiboot: bad plan", 13, 10, 0
msg_dma:        db "mvisor multiboot: fw_cfg DMA failed", 13, 10, 0

        align 8, db 0
gdt:
        dq 0
        dq 0x00cf9b000000ffff           ; 0x08: code, base 0, 4 GiB, 32-bit, accessed
        dq 0x00cf93000000ffff           ; 0x10: data, base 0, 4 GiB, accessed
gdt_end:

bev:
        pushad
        push ds
        push es
        cld
        push cs
        pop ds
        sub sp, FRAME
        mov bp, sp

        ; 1. find the plan: the directory is a big-endian count, then
        ; 64-byte entries (size BE32, selector BE16, reserved, name[56]).
        mov dx, FW_CFG_SEL
        mov ax, FW_CFG_FILE_DIR
        out dx, ax
        mov dx, FW_CFG_DATA
        call read_be32
        mov cx, ax
        cmp eax, 0xffff
        jbe .scan
        mov cx, 0xffff
.scan:
        jcxz .no_plan
        push cx
        push ss
        pop es
        lea di, [bp + F_ENTRY]
        mov cx, 64
        rep insb
        lea di, [bp + F_ENTRY + 8]
        mov si, plan_name
        mov cx, plan_name_len
        repe cmpsb
        pop cx
        je .found
        dec cx
        jmp .scan
.no_plan:
        mov si, msg_no_plan
        jmp fail

.found:
        mov eax, [bp + F_ENTRY]         ; size, big endian
        bswap eax
        cmp eax, 24
        jb .bad_plan
        cmp eax, PLAN_MAX
        ja .bad_plan
        mov cx, ax
        mov ax, [bp + F_ENTRY + 4]      ; selector, big endian
        xchg al, ah
        mov dx, FW_CFG_SEL
        out dx, ax
        mov dx, FW_CFG_DATA
        lea di, [bp + F_PLAN]
        rep insb
        cmp dword [bp + F_PLAN], PLAN_MAGIC
        jne .bad_plan
        mov cx, [bp + F_PLAN + 22]
        cmp cx, MAX_CHUNKS
        ja .bad_plan
        mov eax, [bp + F_ENTRY]
        bswap eax
        movzx ebx, word [bp + F_PLAN + 22]
        lea ebx, [ebx * 8 + 24]
        cmp eax, ebx
        jb .bad_plan

        ; 2. copy the chunks: select the data file, then one DMA read each.
        mov ax, [bp + F_PLAN + 20]
        mov dx, FW_CFG_SEL
        out dx, ax
        lea si, [bp + F_PLAN + 24]
.chunk:
        jcxz .memory_map
        mov dword [bp + F_DESC], 0
        mov byte [bp + F_DESC + 3], DMA_CTL_READ   ; control, big endian
        mov eax, [ss:si + 4]
        bswap eax
        mov [bp + F_DESC + 4], eax      ; length
        mov dword [bp + F_DESC + 8], 0  ; address bits 63-32
        mov eax, [ss:si]
        bswap eax
        mov [bp + F_DESC + 12], eax     ; address bits 31-0
        call frame_address              ; EAX = physical address of SS:BP (the descriptor)
        bswap eax
        mov ebx, eax
        xor eax, eax
        mov dx, FW_CFG_DMA_HIGH
        out dx, eax
        mov eax, ebx
        mov dx, FW_CFG_DMA_LOW
        out dx, eax                     ; starts the transfer
.wait:
        mov eax, [bp + F_DESC]
        bswap eax
        test eax, DMA_CTL_ERROR
        jnz .dma_failed
        test eax, eax
        jnz .wait
        add si, 8
        dec cx
        jmp .chunk
.bad_plan:
        mov si, msg_bad_plan
        jmp fail
.dma_failed:
        mov si, msg_dma
        jmp fail

        ; 3. the memory map from INT 15h E820, straight into the info block
.memory_map:
        mov eax, [bp + F_PLAN + 12]
        mov di, ax
        and di, 0x0f
        add di, 4                       ; past the entry's size field
        shr eax, 4
        mov es, ax
        xor esi, esi                    ; entries so far
        xor ebx, ebx                    ; continuation
.e820:
        cmp esi, [bp + F_PLAN + 16]
        jae .e820_done
        mov eax, 0xe820
        mov edx, SMAP
        mov ecx, 20
        push esi
        push ebp
        int 0x15
        pop ebp
        pop esi
        jc .e820_done
        cmp eax, SMAP
        jne .e820_done
        mov dword [es:di - 4], 20
        cmp dword [es:di], 0x100000     ; RAM from 1 MiB: mem_upper
        jne .e820_next
        cmp dword [es:di + 4], 0
        jne .e820_next
        cmp dword [es:di + 16], 1
        jne .e820_next
        mov eax, [es:di + 8]
        shr eax, 10
        push es
        push di
        call info_segment               ; ES:DI = multiboot_info
        mov [es:di + MBI_MEM_UPPER], eax
        pop di
        pop es
.e820_next:
        add di, 24
        inc esi
        test ebx, ebx
        jnz .e820
.e820_done:
        test esi, esi
        jz .lower                       ; nothing from the BIOS: keep the VMM's map
        imul eax, esi, 24
        call info_segment
        mov [es:di + MBI_MMAP_LENGTH], eax
.lower:
        int 0x12                        ; AX = KiB of conventional memory
        movzx eax, ax
        call info_segment
        mov [es:di + MBI_MEM_LOWER], eax

        ; 4. flat 32-bit protected mode, then the kernel
        cli
        xor eax, eax
        mov ax, cs
        shl eax, 4
        mov edx, eax                    ; linear base of this ROM
        mov word [bp + F_DESC], gdt_end - gdt - 1
        add eax, gdt
        mov [bp + F_DESC + 2], eax
        o32 lgdt [bp + F_DESC]
        mov esi, [bp + F_PLAN + 4]      ; entry
        mov ebx, [bp + F_PLAN + 8]      ; multiboot_info
        add edx, pm32
        mov eax, cr0
        or al, 1
        mov cr0, eax
        push dword 0x08
        push edx
        o32 retf

bits 32
pm32:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax
        mov eax, MB_MAGIC
        jmp esi
bits 16

; Prints DS:SI (NUL-terminated) through INT 10h and returns to the BIOS.
fail:
        push cs
        pop ds
.char:
        lodsb
        test al, al
        jz .done
        mov ah, 0x0e
        mov bx, 0x0007
        int 0x10
        jmp .char
.done:
        add sp, FRAME
        pop es
        pop ds
        popad
        retf

; EAX = four bytes from port DX, the first one most significant.
read_be32:
        push cx
        mov cx, 4
.byte:
        shl eax, 8
        in al, dx
        loop .byte
        pop cx
        ret

; EAX = the physical address of SS:BP.
frame_address:
        push ebx
        xor eax, eax
        mov ax, ss
        shl eax, 4
        movzx ebx, bp
        add eax, ebx
        pop ebx
        ret

; ES:DI = the multiboot_info of the plan (below 640 KiB).
info_segment:
        push eax
        mov eax, [bp + F_PLAN + 8]
        mov di, ax
        and di, 0x0f
        shr eax, 4
        mov es, ax
        pop eax
        ret

code_end:
        times ((code_end - rom_start + 1 + 511) / 512) * 512 - 1 - (code_end - rom_start) db 0
        db 0                            ; checksum (set by the VMM)
rom_end:
rom_blocks equ (rom_end - rom_start) / 512
