; mb-probe.asm: a multiboot (v1) kernel that reports what its boot loader
; handed over, on COM1, then ends the VM through isa-debug-exit (port 0xf4).
;
; Build: nasm -f bin -o mb-probe.bin mb-probe.asm (test/helpers/multiboot-probe.ts)
;
; The header uses the a.out kludge (flag 16): loaded at 1 MiB, bss after it.
; Output, one item per line:
;   MB magic=<EAX> flags=<flags> lower=<mem_lower> upper=<mem_upper>
;   MB cmdline=<string>
;   MB mods=<count> mod0=<first module's bytes as text, up to 64>
;   MB mmap <base> <length> <type>        (low 32 bits, one line per entry)
;   MB cr0=<CR0> cs=<CS> eflags=<EFLAGS>
;   MB done
; Numbers are 8 hex digits.

bits 32
cpu 686

LOAD_ADDR   equ 0x100000
COM1        equ 0x3f8
DEBUG_EXIT  equ 0xf4
MB_MAGIC    equ 0x1badb002
MB_FLAGS    equ 0x00010002          ; a.out kludge, memory info

org LOAD_ADDR

header:
        dd MB_MAGIC
        dd MB_FLAGS
        dd -(MB_MAGIC + MB_FLAGS)
        dd header                       ; header_addr
        dd LOAD_ADDR                    ; load_addr
        dd load_end                     ; load_end_addr
        dd bss_end                      ; bss_end_addr
        dd entry                        ; entry_addr

entry:
        mov esp, stack_top
        mov [saved_eax], eax
        mov [saved_ebx], ebx
        pushfd
        pop dword [saved_eflags]
        mov eax, cr0
        mov [saved_cr0], eax
        xor eax, eax
        mov ax, cs
        mov [saved_cs], eax

        mov esi, s_magic
        call puts
        mov eax, [saved_eax]
        call puthex
        mov ebx, [saved_ebx]
        mov esi, s_flags
        call puts
        mov eax, [ebx]
        call puthex
        mov esi, s_lower
        call puts
        mov eax, [ebx + 4]
        call puthex
        mov esi, s_upper
        call puts
        mov eax, [ebx + 8]
        call puthex
        call newline

        mov esi, s_cmdline
        call puts
        mov esi, [ebx + 16]
        call puts
        call newline

        mov esi, s_mods
        call puts
        mov eax, [ebx + 20]
        call puthex
        test eax, eax
        jz .mods_done
        mov esi, s_mod0
        call puts
        mov edi, [ebx + 24]             ; mods_addr
        mov esi, [edi]                  ; mod_start
        mov ecx, [edi + 4]
        sub ecx, esi                    ; length
        cmp ecx, 64
        jbe .mod_bytes
        mov ecx, 64
.mod_bytes:
        jecxz .mods_done
.mod_byte:
        lodsb
        cmp al, 0x20
        jb .mod_skip
        call putc
.mod_skip:
        loop .mod_byte
.mods_done:
        call newline

        mov esi, [ebx + 48]             ; mmap_addr
        mov edi, esi
        add edi, [ebx + 44]             ; end
.mmap:
        cmp esi, edi
        jae .mmap_done
        push esi
        mov esi, s_mmap
        call puts
        pop esi
        mov eax, [esi + 4]              ; base, low 32 bits
        call puthex
        mov al, ' '
        call putc
        mov eax, [esi + 12]             ; length, low 32 bits
        call puthex
        mov al, ' '
        call putc
        mov eax, [esi + 20]             ; type
        call puthex
        call newline
        mov eax, [esi]                  ; size of the rest
        lea esi, [esi + eax + 4]
        jmp .mmap
.mmap_done:

        mov esi, s_cr0
        call puts
        mov eax, [saved_cr0]
        call puthex
        mov esi, s_cs
        call puts
        mov eax, [saved_cs]
        call puthex
        mov esi, s_eflags
        call puts
        mov eax, [saved_eflags]
        call puthex
        call newline
        mov esi, s_done
        call puts
        call newline

        mov dx, DEBUG_EXIT
        xor eax, eax
        out dx, eax                     ; exit status (0 << 1) | 1
.hang:
        cli
        hlt
        jmp .hang

; putc: AL to COM1 (waits for THR empty).
putc:
        push edx
        push eax
        mov dx, COM1 + 5
.wait:
        in al, dx
        test al, 0x20
        jz .wait
        pop eax
        mov dx, COM1
        out dx, al
        pop edx
        ret

; puts: the NUL-terminated string at ESI.
puts:
        push esi
        push eax
.next:
        lodsb
        test al, al
        jz .end
        call putc
        jmp .next
.end:
        pop eax
        pop esi
        ret

newline:
        push eax
        mov al, 13
        call putc
        mov al, 10
        call putc
        pop eax
        ret

; puthex: EAX as 8 hex digits.
puthex:
        push ecx
        push eax
        mov ecx, 8
.digit:
        rol eax, 4
        push eax
        and al, 0x0f
        add al, '0'
        cmp al, '9'
        jbe .out
        add al, 'A' - '9' - 1
.out:
        call putc
        pop eax
        loop .digit
        pop eax
        pop ecx
        ret

s_magic:    db "MB magic=", 0
s_flags:    db " flags=", 0
s_lower:    db " lower=", 0
s_upper:    db " upper=", 0
s_cmdline:  db "MB cmdline=", 0
s_mods:     db "MB mods=", 0
s_mod0:     db " mod0=", 0
s_mmap:     db "MB mmap ", 0
s_cr0:      db "MB cr0=", 0
s_cs:       db " cs=", 0
s_eflags:   db " eflags=", 0
s_done:     db "MB done", 0

        align 4
load_end:

section .bss follows=.text nobits
saved_eax:      resd 1
saved_ebx:      resd 1
saved_eflags:   resd 1
saved_cr0:      resd 1
saved_cs:       resd 1
        resb 4096
stack_top:
bss_end:
