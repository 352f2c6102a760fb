//! `uniffi-bindgen`: generates the Kotlin and Swift bindings of `tah-ffi`
//! from the metadata in its compiled library (see `scripts/gen-bindings.sh`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
