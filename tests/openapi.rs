//! The committed `openapi/openapi.json` is exactly what the code generates, so SDK authors and
//! schema fuzzers that read the file see the API the binary serves.

#[test]
fn committed_openapi_document_is_up_to_date() {
    let generated = affine_gateway::http::docs::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, format!("{generated}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(path).expect("openapi/openapi.json exists");
    assert_eq!(
        committed.trim_end(),
        generated,
        "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --test openapi`"
    );
}
