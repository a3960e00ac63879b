extern crate self as weir_sdk;
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "job-component",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::wit",
        runtime_path: "weir_sdk::wit_bindgen::rt",
        debug: true,
    });
}
pub use wit_bindgen;
