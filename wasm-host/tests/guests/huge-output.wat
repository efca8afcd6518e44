;; Hostile: writes 64 KiB chunks to the output forever, ignoring the errors (ERR_TOO_LARGE)
;; that the host returns past the output limit. The host has to end it: by trapping on the
;; limit, or with fuel or the wall-clock limit.
(module
  (import "liquid" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "Liquid huge-output: this chunk repeats forever. ")
  (func (export "liquid_call") (result i32)
    (loop $forever
      (drop (call $output (i32.const 0) (i32.const 65536)))
      (br $forever))
    (i32.const 0)))
