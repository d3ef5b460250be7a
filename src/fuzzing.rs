//! The bodies of the fuzz targets in `fuzz/` (each target is `fuzz_target!(|data| flightbay::fuzzing::<name>(data))`),
//! kept here so that `cargo test` runs every one of them too: [`TARGETS`] over a bounded, seeded stream of mutated
//! inputs (the fuzz smoke run below), and libFuzzer for as long as `fuzz/run.sh` is told to.
//!
//! Each body feeds bytes to one parser or decoder and panics only when the code under test is wrong: a panic, an
//! error with a server-side code, or a result that breaks the parser's own promise (a ticket that does not
//! round-trip, a zero-width resample bin, an IPC split longer than its input).

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, ListArray, StringArray};
use arrow::buffer::Buffer;
use arrow::datatypes::{Int8Type, Int32Type};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::{FlightData, FlightDescriptor};
use futures::TryStreamExt;
use prost::Message;
use tonic::Code;

use crate::protocol::action::ACTIONS;
use crate::protocol::flight_data::{decode_grpc_request, split_ipc_stream};
use crate::protocol::reference::{Source, parse_path, parse_text};
use crate::protocol::upload::decode_messages;
use crate::protocol::{Action, Command, Ticket};

/// A fuzz target's body: panics when the code under test is wrong.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/Cargo.toml` names its binaries.
pub const TARGETS: &[(&str, Target)] = &[
    ("ticket", ticket),
    ("command", command),
    ("action", action),
    ("reference", reference),
    ("resample_every", resample_every),
    ("grpc_frame", grpc_frame),
    ("ipc_split", ipc_split),
    ("do_put_decode", do_put_decode),
];

/// Tickets: whatever parses must round-trip through `encode`.
pub fn ticket(data: &[u8]) {
    if let Ok(ticket) = Ticket::try_decode(data) {
        assert_eq!(Ticket::try_decode(&ticket.encode()).ok(), Some(ticket));
    }
}

/// CMD descriptors (SQL text, JSON ops, the SQL nesting bound): any bytes parse or fail with a client error.
pub fn command(data: &[u8]) {
    if let Err(e) = Command::try_decode(data) {
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::protocol::sql_depth::estimate(text);
    }
}

/// Action bodies: the first byte picks a known action type (or makes up an unknown one), the rest is the body.
pub fn action(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kind = match ACTIONS.get(pick as usize) {
        Some((kind, _)) => (*kind).to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(8)]).into_owned(),
    };
    if let Err(e) = Action::try_decode(&kind, body) {
        assert!(matches!(e.code(), Code::InvalidArgument | Code::Unimplemented), "{e}");
    }
}

/// PATH descriptors (NUL separates the elements), text references and JSON `source` values.
pub fn reference(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<String> = text.split('\u{0}').map(str::to_string).collect();
    let _ = parse_path(&parts);
    let _ = parse_text(&text);
    let _ = serde_json::from_slice::<Source>(data);
}

/// `resample`'s bin width: whatever parses is positive.
pub fn resample_every(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(width) = crate::query::parse_every(text)
    {
        assert!(width > 0, "{text:?} -> {width}");
    }
}

/// DoGet's hand-written gRPC request decoder.
pub fn grpc_frame(data: &[u8]) {
    let _ = decode_grpc_request::<arrow_flight::Ticket>(data);
    let _ = decode_grpc_request::<FlightDescriptor>(data);
}

/// The IPC stream splitter of DoGet's encoder, over the input cut into up to 8 buffers where its first byte says.
pub fn ipc_split(data: &[u8]) {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let mut buffers = Vec::new();
    let mut start = 0;
    for i in 0..(cuts % 8) as usize {
        let at = (start + 1 + i * 7 + cuts as usize).min(rest.len());
        buffers.push(Buffer::from(&rest[start..at]));
        start = at;
    }
    buffers.push(Buffer::from(&rest[start..]));
    if let Ok(messages) = split_ipc_stream(buffers) {
        let total: usize = messages.iter().map(|m| m.header.len() + m.body_len()).sum();
        assert!(total <= rest.len());
    }
}

/// DoPut's decoding (the upload checks and arrow-flight's decoder) never panics. With an even first byte, the rest
/// edits a valid upload (schema, a batch of several types, a dictionary batch): each 4-byte group sets one byte of
/// one message's header or body, and a leftover byte truncates a body. With an odd one, the rest is raw protobuf
/// FlightData messages, each after a one-byte length.
///
/// DoPut turns a panic inside arrow's decoder into INVALID_ARGUMENT; a harness that aborts on any panic must
/// install [`quiet_caught_panics`] first, so that only a panic escaping `decode_messages` counts.
pub fn do_put_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let messages = if mode & 1 == 0 {
        let mut messages = upload_template().clone();
        let mut headers: Vec<Vec<u8>> = messages.iter().map(|m| m.data_header.to_vec()).collect();
        let mut bodies: Vec<Vec<u8>> = messages.iter().map(|m| m.data_body.to_vec()).collect();
        for edit in rest.chunks_exact(4) {
            let which = edit[0] as usize % messages.len();
            let target = if edit[0] & 0x80 == 0 {
                &mut headers[which]
            } else {
                &mut bodies[which]
            };
            if target.is_empty() {
                continue;
            }
            let at = u16::from_le_bytes([edit[1], edit[2]]) as usize % target.len();
            target[at] = edit[3];
        }
        if let Some(&cut) = rest.chunks_exact(4).remainder().first() {
            let which = cut as usize % messages.len();
            let keep = bodies[which].len().saturating_sub(cut as usize);
            bodies[which].truncate(keep);
        }
        for (m, (h, b)) in messages.iter_mut().zip(headers.into_iter().zip(bodies)) {
            m.data_header = h.into();
            m.data_body = b.into();
        }
        messages
    } else {
        let mut messages = Vec::new();
        let mut rest = rest;
        while let Some((&len, tail)) = rest.split_first() {
            let (one, tail) = tail.split_at((len as usize).min(tail.len()));
            if let Ok(m) = FlightData::decode(one) {
                messages.push(m);
            }
            rest = tail;
        }
        messages
    };
    let _ = decode_messages(messages);
}

/// Replaces the panic hook with one that prints nothing, for harnesses that treat any printed panic as a crash.
pub fn quiet_caught_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| std::panic::set_hook(Box::new(|_| {})));
}

/// The valid upload [`do_put_decode`] edits.
fn upload_template() -> &'static Vec<FlightData> {
    static TEMPLATE: OnceLock<Vec<FlightData>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dict: DictionaryArray<Int8Type> = vec!["a", "b", "a", "c"].into_iter().collect();
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
            Some(vec![None]),
        ]);
        let batch = RecordBatch::try_from_iter([
            (
                "i",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![0.5, 1.5, f64::NAN, -1.0])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("x"), None, Some("yz"), Some("")])) as ArrayRef,
            ),
            ("l", Arc::new(list) as ArrayRef),
            ("d", Arc::new(dict) as ArrayRef),
        ])
        .expect("a valid batch");
        let encoded = FlightDataEncoderBuilder::new()
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(futures::stream::iter([Ok(batch)]));
        futures::executor::block_on(encoded.try_collect::<Vec<_>>()).expect("encoding a valid batch")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs per target in the smoke run.
    const SMOKE_INPUTS: usize = 20_000;

    /// Inputs each target starts from: what it parses when all is well, and the crashes fuzzing found.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = match target {
            "ticket" => vec![b"42".to_vec(), b"42@1000000+500000".to_vec()],
            "command" => vec![
                b"SELECT a, count(*) FROM t WHERE (b > 1 OR c = 'x') GROUP BY a".to_vec(),
                br#"{"op":"sort_by","source":"t","keys":[["v","descending"]],"null_placement":"at_start"}"#.to_vec(),
                br#"{"op":"put","name":"ns.t","mode":"append"}"#.to_vec(),
            ],
            "action" => vec![[0u8].iter().chain(br#"{"name":"t"}"#).copied().collect()],
            "reference" => vec![b"ns\0t".to_vec(), b"42".to_vec(), br#"{"id":7}"#.to_vec()],
            "resample_every" => vec![b"1h".to_vec(), b"15min".to_vec()],
            "grpc_frame" => vec![vec![0x0a, 0x02, b'4', b'2']],
            "ipc_split" => vec![[3u8].iter().chain(&upload_template()[1].data_header).copied().collect()],
            "do_put_decode" => vec![vec![0, 1, 2, 3, 4], vec![1, 3, 0x1a, 1, 0]],
            _ => Vec::new(),
        };
        let regressions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        for entry in std::fs::read_dir(regressions).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&format!("{target}-")) {
                seeds.push(std::fs::read(entry.path()).expect("a regression input"));
            }
        }
        seeds.push(Vec::new());
        seeds
    }

    /// SplitMix64: a fixed stream, so a failure here repeats.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// One to four libFuzzer-style edits: set, insert or delete a byte, truncate, or repeat a slice.
    fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
        const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 0xff, b'(', b'"', b'@', b'{', b'+'];
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len() + 1);
            let byte = if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.next() as u8
            };
            match rng.below(5) {
                0 if at < input.len() => input[at] = byte,
                1 => input.insert(at, byte),
                2 if at < input.len() => {
                    input.remove(at);
                }
                3 => input.truncate(at),
                _ => {
                    let end = (at + 1 + rng.below(16)).min(input.len());
                    let slice = input[at.min(end)..end].to_vec();
                    input.splice(at..at, slice);
                }
            }
        }
    }

    /// The fuzz smoke run: every target over its seeds and [`SMOKE_INPUTS`] mutations of them.
    #[test]
    fn every_fuzz_target_survives_a_seeded_smoke_run() {
        for (name, target) in TARGETS {
            let seeds = seeds(name);
            let mut rng = Rng(name.len() as u64);
            for seed in &seeds {
                target(seed);
            }
            for _ in 0..SMOKE_INPUTS {
                let mut input = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, &mut input);
                let caught = std::panic::catch_unwind(|| target(&input));
                assert!(caught.is_ok(), "fuzz target {name} failed on {input:?}");
            }
        }
    }
}
