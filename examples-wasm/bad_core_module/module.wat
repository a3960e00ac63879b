;; Fixture: a plain core WebAssembly module, not a component. The host must refuse it
;; with a clear error instead of trying to instantiate it. Tests turn this text into
;; bytes with the `wat` crate.
(module
  (func (export "plan")))
