;; line_scan.wat: netchat's echo fast path in WebAssembly with 128-bit SIMD.
;; Assembled into line_scan_wasm.ts by `deno task line-scan` (tools/gen_line_scan.ts).
;;
;; whole_lines_end(length, max_line, utf8) looks at bytes [0, length) of
;; memory, a chunk read from a socket, and returns where its last complete line
;; ends (just past the last "\n") provided that every line up to there is at
;; most max_line bytes ("\n" not counted), no "\r" comes before that end and,
;; when utf8 is 1, those lines are well-formed UTF-8; else 0. It is
;; wholeLinesEnd's test (line_buffer.ts), done 16 bytes at a time: one pass
;; finds every "\n", the first "\r" and the first byte that is not UTF-8.
;;
;; Well-formed UTF-8 is the Unicode Standard's table 3-7 (section 3.9): no
;; overlong forms, no surrogates (U+D800-U+DFFF), nothing past U+10FFFF. A
;; block of ASCII needs one test; others are checked character by character.
(module
  ;; One 64 KiB page: chunks up to that size are copied in at offset 0.
  (memory (export "memory") 1)
  (func (export "whole_lines_end")
    (param $length i32) (param $max_line i32) (param $utf8 i32) (result i32)
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
    (local $utf8_at i32)     ;; bytes before this offset are known to be UTF-8
    (local $first_bad i32)   ;; offset of the first character that is not UTF-8, or -1
    (local $checked i32)
    (local $v1 v128)
    (local $v2 v128)
    (local $v3 v128)
    (local $lf v128)
    (local $cr v128)
    (local $utf8_due i32)    ;; the 64 bytes ahead still need the UTF-8 test
    (local.set $lf (i8x16.splat (i32.const 0x0a)))
    (local.set $cr (i8x16.splat (i32.const 0x0d)))
    (local.set $first_cr (i32.const -1))
    (local.set $first_bad (i32.const -1))
    ;; Without the UTF-8 test, act as if every byte were checked already.
    (if (i32.eqz (local.get $utf8)) (then (local.set $utf8_at (i32.const 0x7fffffff))))
    (local.set $blocks_end (i32.and (local.get $length) (i32.const -16)))
    (block $blocks_done
      (loop $next_block
        (br_if $blocks_done (i32.ge_u (local.get $i) (local.get $blocks_end)))
        ;; Most of a chunk of text is 64-byte runs with no "\n", no "\r" and
        ;; (where it is still to be checked) no byte past ASCII: skipped with
        ;; one test. Anything else is looked at a block at a time, below.
        (if (i32.le_u (i32.add (local.get $i) (i32.const 64)) (local.get $blocks_end))
          (then
            (local.set $block (v128.load (local.get $i)))
            (local.set $v1 (v128.load offset=16 (local.get $i)))
            (local.set $v2 (v128.load offset=32 (local.get $i)))
            (local.set $v3 (v128.load offset=48 (local.get $i)))
            (local.set $utf8_due
              (i32.lt_u (local.get $utf8_at) (i32.add (local.get $i) (i32.const 64))))
            (if (i32.eqz (i32.or
                  (v128.any_true (v128.or
                    (v128.or
                      (v128.or (i8x16.eq (local.get $block) (local.get $lf))
                               (i8x16.eq (local.get $block) (local.get $cr)))
                      (v128.or (i8x16.eq (local.get $v1) (local.get $lf))
                               (i8x16.eq (local.get $v1) (local.get $cr))))
                    (v128.or
                      (v128.or (i8x16.eq (local.get $v2) (local.get $lf))
                               (i8x16.eq (local.get $v2) (local.get $cr)))
                      (v128.or (i8x16.eq (local.get $v3) (local.get $lf))
                               (i8x16.eq (local.get $v3) (local.get $cr))))))
                  (i32.and (local.get $utf8_due)
                    (i32.ne (i32.const 0) (i8x16.bitmask
                      (v128.or (v128.or (local.get $block) (local.get $v1))
                               (v128.or (local.get $v2) (local.get $v3))))))))
              (then
                ;; All ASCII: no character begun earlier runs into it.
                (if (local.get $utf8_due)
                  (then (local.set $utf8_at (i32.add (local.get $i) (i32.const 64)))))
                (local.set $i (i32.add (local.get $i) (i32.const 64)))
                (br $next_block)))))
        (local.set $block (v128.load (local.get $i)))
        (local.set $is_lf (i8x16.eq (local.get $block) (local.get $lf)))
        (local.set $is_cr (i8x16.eq (local.get $block) (local.get $cr)))
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
        ;; UTF-8: what is left of the block past a character begun in the last one.
        (if (i32.lt_u (local.get $utf8_at) (i32.add (local.get $i) (i32.const 16)))
          (then
            (if (i8x16.bitmask (local.get $block))
              (then
                (local.set $checked
                  (call $check_utf8 (local.get $utf8_at) (i32.add (local.get $i) (i32.const 16))
                    (local.get $length)))
                (if (i32.lt_s (local.get $checked) (i32.const 0))
                  (then
                    (local.set $first_bad (i32.sub (i32.const -1) (local.get $checked)))
                    (local.set $utf8_at (i32.const 0x7fffffff)))
                  (else (local.set $utf8_at (local.get $checked)))))
              ;; All ASCII (no byte has its top bit set).
              (else (local.set $utf8_at (i32.add (local.get $i) (i32.const 16)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next_block)))
    ;; UTF-8 of the last 0-15 bytes.
    (if (i32.lt_u (local.get $utf8_at) (local.get $length))
      (then
        (local.set $checked
          (call $check_utf8 (local.get $utf8_at) (local.get $length) (local.get $length)))
        (if (i32.lt_s (local.get $checked) (i32.const 0))
          (then (local.set $first_bad (i32.sub (i32.const -1) (local.get $checked)))))))
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
    ;; A "\n" is never inside a character, so the lines before $line_start are
    ;; UTF-8 exactly when the first bad character is at or after it.
    (if (i32.and (i32.ge_s (local.get $first_bad) (i32.const 0))
                 (i32.lt_s (local.get $first_bad) (local.get $line_start)))
      (then (return (i32.const 0))))
    (local.get $line_start))

  ;; Checks the characters that begin in [at, to) (the last may end past `to`,
  ;; never past `length`). Returns where the next character begins (>= to),
  ;; or -1 - offset of the first one that is not well-formed (or is cut off by
  ;; the end of the chunk).
  (func $check_utf8 (param $at i32) (param $to i32) (param $length i32) (result i32)
    (local $lead i32)
    (local $second i32)
    (local $more i32)        ;; continuation bytes after the second
    (local $min i32)         ;; the second byte's range (table 3-7)
    (local $max i32)
    (local $lead_at i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $at) (local.get $to)))
        (local.set $lead_at (local.get $at))
        (local.set $lead (i32.load8_u (local.get $at)))
        (if (i32.lt_u (local.get $lead) (i32.const 0x80))
          (then
            (local.set $at (i32.add (local.get $at) (i32.const 1)))
            (br $next)))
        (local.set $min (i32.const 0x80))
        (local.set $max (i32.const 0xbf))
        (if (i32.lt_u (i32.sub (local.get $lead) (i32.const 0xc2)) (i32.const 30))
          (then (local.set $more (i32.const 0)))                      ;; C2..DF
          (else
            (if (i32.lt_u (i32.sub (local.get $lead) (i32.const 0xe0)) (i32.const 16))
              (then                                                   ;; E0..EF
                (local.set $more (i32.const 1))
                (if (i32.eq (local.get $lead) (i32.const 0xe0)) (then (local.set $min (i32.const 0xa0))))
                (if (i32.eq (local.get $lead) (i32.const 0xed)) (then (local.set $max (i32.const 0x9f)))))
              (else
                (if (i32.lt_u (i32.sub (local.get $lead) (i32.const 0xf0)) (i32.const 5))
                  (then                                               ;; F0..F4
                    (local.set $more (i32.const 2))
                    (if (i32.eq (local.get $lead) (i32.const 0xf0)) (then (local.set $min (i32.const 0x90))))
                    (if (i32.eq (local.get $lead) (i32.const 0xf4)) (then (local.set $max (i32.const 0x8f)))))
                  ;; 80..C1 (a continuation, or an overlong lead) and F5..FF.
                  (else (return (i32.sub (i32.const -1) (local.get $at)))))))))
        ;; Cut off: the character's last byte would be past the chunk.
        (if (i32.ge_u (i32.add (i32.add (local.get $at) (local.get $more)) (i32.const 1))
                      (local.get $length))
          (then (return (i32.sub (i32.const -1) (local.get $at)))))
        (local.set $second (i32.load8_u offset=1 (local.get $at)))
        (if (i32.or (i32.lt_u (local.get $second) (local.get $min))
                    (i32.gt_u (local.get $second) (local.get $max)))
          (then (return (i32.sub (i32.const -1) (local.get $at)))))
        (local.set $at (i32.add (local.get $at) (i32.const 2)))
        ;; The rest are continuation bytes, 10xxxxxx.
        (block $continued
          (loop $next_continuation
            (br_if $continued (i32.eqz (local.get $more)))
            (if (i32.ne (i32.and (i32.load8_u (local.get $at)) (i32.const 0xc0)) (i32.const 0x80))
              (then (return (i32.sub (i32.const -1) (local.get $lead_at)))))
            (local.set $at (i32.add (local.get $at) (i32.const 1)))
            (local.set $more (i32.sub (local.get $more) (i32.const 1)))
            (br $next_continuation)))
        (br $next)))
    (local.get $at)))
