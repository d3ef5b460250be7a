//! DoAction types and bodies: any bytes parse or fail with INVALID_ARGUMENT (UNIMPLEMENTED for unknown types).
#![no_main]

use flightbay::protocol::Action;
use flightbay::protocol::action::ACTIONS;
use libfuzzer_sys::fuzz_target;
use tonic::Code;

fuzz_target!(|data: &[u8]| {
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
});
