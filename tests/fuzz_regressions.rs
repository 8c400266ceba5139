//! The stable half of the fuzzing (docs/SECURITY.md, "Fuzzing"): every committed corpus
//! input and every crash libFuzzer found (`fuzz/corpus/TARGET`, `fuzz/artifacts/TARGET`)
//! replayed through the same bodies the cargo-fuzz targets run, and bounded property tests of
//! the chunk-invariance properties of the SSE decoder and the `<think>` splitter. This is the
//! short run CI makes; the long runs are `bash scripts/fuzz.sh` on nightly.

use std::path::{Path, PathBuf};

use affine_gateway::fuzzing;
use proptest::prelude::*;

/// The files of `fuzz/corpus/TARGET` and `fuzz/artifacts/TARGET` (crashes, slow inputs).
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("directory entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Replays every input of `target` through `body`; a panic names the file.
fn replay(target: &str, body: impl Fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no committed corpus for `{target}` in fuzz/corpus/{target}"
    );
    for path in &files {
        let data = std::fs::read(path).expect("corpus file");
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&data)));
        if let Err(e) = run {
            std::panic::resume_unwind(Box::new(format!(
                "{} fails: {}",
                path.display(),
                e.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| e.downcast_ref::<&str>().copied())
                    .unwrap_or("(panic)")
            )));
        }
    }
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            replay(stringify!($name), fuzzing::$name);
        }
    )*};
}

replay_tests!(
    btauth,
    epistula,
    jwt,
    ss58,
    reason_request,
    chat_request,
    responses_request,
    sse,
    think,
    config,
    chain_metadata,
    chain_subnet_state,
);

#[test]
fn chain_events() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/chain/fixtures/state_getMetadata.hex");
    let text = std::fs::read_to_string(&path).expect("metadata fixture");
    let bytes = hex::decode(text.trim().trim_start_matches("0x")).expect("fixture is hex");
    let target = fuzzing::ChainEvents::new(&bytes).expect("fixture metadata decodes");
    replay("chain_events", |data| target.run(data));
}

/// SSE text made of the pieces that matter to the decoder: field names, colons, every kind of
/// line end, a BOM, comments and multi-byte characters.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        "data",
        "data:",
        "data: ",
        "event:",
        "event: e",
        "id: 7",
        "retry: 1",
        ":",
        ": ping",
        "\n",
        "\n",
        "\r",
        "\r\n",
        "\r\n",
        "\u{FEFF}",
        "{\"a\":1}",
        "x",
        "π",
        "[DONE]",
        " ",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|p| p.concat().into_bytes())
}

/// Content made of what matters to the splitter: the tags, pieces of them, ASCII and Unicode
/// whitespace, and multi-byte characters.
fn think_content() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "<think>", "</think>", "<", "</", "<th", "</thi", "think>", ">", " ", "\n", "\t",
        "\u{3000}", "\u{a0}", "a", "bc", "π", "日本",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

proptest! {
    // 256 cases each keep the whole binary within a few seconds on a shared 2-core machine.
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any chunking of the same SSE bytes yields the same events and the same error.
    #[test]
    fn sse_events_do_not_depend_on_chunking(
        stream in sse_stream(),
        sizes in prop::collection::vec(0usize..24, 1..6),
        max in prop_oneof![Just(1usize << 20), 1usize..48],
    ) {
        fuzzing::sse_chunked(max, &stream, &sizes);
    }

    /// Any chunking of the same content yields what `split_think` makes of it whole.
    #[test]
    fn think_pieces_do_not_depend_on_chunking(
        content in think_content(),
        sizes in prop::collection::vec(0usize..12, 1..6),
    ) {
        fuzzing::think_chunked(&content, &sizes);
    }

    /// Arbitrary bytes through the SSE and think bodies (the fuzz input layout).
    #[test]
    fn sse_and_think_bodies_take_any_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::sse(&data);
        fuzzing::think(&data);
    }
}
