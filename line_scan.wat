;; line_scan.wat: netchat's echo fast path in WebAssembly with 128-bit SIMD.
;; Assembled into line_scan_wasm.ts by `deno task line-scan` (tools/gen_line_scan.ts).
;;
;; whole_lines_end(length, max_line) looks at bytes [0, length) of memory, a
;; chunk read from a socket, and returns where its last complete line ends
;; (just past the last "\n") provided that every line up to there is at most
;; max_line bytes ("\n" not counted) and no "\r" comes before that end; else 0.
;; It is LineFramer.wholeLinesEnd's test (line_buffer.ts), done 16 bytes at a
;; time: one pass finds every "\n" and the first "\r".
(module
  ;; One 64 KiB page: chunks up to that size are copied in at offset 0.
  (memory (export "memory") 1)
  (func (export "whole_lines_end") (param $length i32) (param $max_line i32) (result i32)
    (local $i i32)           ;; offset of the 16-byte block being scanned
    (local $blocks_end i32)  ;; where whole blocks end; the rest is scanned bytewise
    (local $line_start i32)  ;; offset just past the last "\n" seen
    (local $first_cr i32)    ;; offset of the first "\r", or -1
    (local $newlines i32)    ;; bit k set: byte $i + k is "\n"
    (local $at i32)
    (local $byte i32)
    (local $block v128)
    (local $is_lf v128)
    (local $is_cr v128)
    (local.set $first_cr (i32.const -1))
    (local.set $blocks_end (i32.and (local.get $length) (i32.const -16)))
    (block $blocks_done
      (loop $next_block
        (br_if $blocks_done (i32.ge_u (local.get $i) (local.get $blocks_end)))
        (local.set $block (v128.load (local.get $i)))
        (local.set $is_lf (i8x16.eq (local.get $block) (i8x16.splat (i32.const 0x0a))))
        (local.set $is_cr (i8x16.eq (local.get $block) (i8x16.splat (i32.const 0x0d))))
        ;; Most blocks of text hold neither: one test skips them.
        (if (v128.any_true (v128.or (local.get $is_lf) (local.get $is_cr)))
          (then
            (if (i32.and (i32.lt_s (local.get $first_cr) (i32.const 0))
                         (v128.any_true (local.get $is_cr)))
              (then (local.set $first_cr
                (i32.add (local.get $i) (i32.ctz (i8x16.bitmask (local.get $is_cr)))))))
            ;; Each "\n" in the block, lowest first, ends a line: check its length.
            (local.set $newlines (i8x16.bitmask (local.get $is_lf)))
            (block $newlines_done
              (loop $next_newline
                (br_if $newlines_done (i32.eqz (local.get $newlines)))
                (local.set $at (i32.add (local.get $i) (i32.ctz (local.get $newlines))))
                (if (i32.gt_u (i32.sub (local.get $at) (local.get $line_start)) (local.get $max_line))
                  (then (return (i32.const 0))))
                (local.set $line_start (i32.add (local.get $at) (i32.const 1)))
                ;; Clear the lowest set bit.
                (local.set $newlines
                  (i32.and (local.get $newlines) (i32.sub (local.get $newlines) (i32.const 1))))
                (br $next_newline)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next_block)))
    ;; The last 0-15 bytes, one at a time, with the same tests.
    (block $tail_done
      (loop $next_byte
        (br_if $tail_done (i32.ge_u (local.get $i) (local.get $length)))
        (local.set $byte (i32.load8_u (local.get $i)))
        (if (i32.and (i32.eq (local.get $byte) (i32.const 0x0d))
                     (i32.lt_s (local.get $first_cr) (i32.const 0)))
          (then (local.set $first_cr (local.get $i))))
        (if (i32.eq (local.get $byte) (i32.const 0x0a))
          (then
            (if (i32.gt_u (i32.sub (local.get $i) (local.get $line_start)) (local.get $max_line))
              (then (return (i32.const 0))))
            (local.set $line_start (i32.add (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next_byte)))
    ;; $line_start is now the end of the last complete line (0 if none).
    (if (i32.and (i32.ge_s (local.get $first_cr) (i32.const 0))
                 (i32.lt_s (local.get $first_cr) (local.get $line_start)))
      (then (return (i32.const 0))))
    (local.get $line_start)))
