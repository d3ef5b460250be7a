//! ListFlights: one FlightInfo per stored flight, filtered by an optional glob over names in `criteria`.

use arrow_flight::{Criteria, FlightInfo};
use futures::StreamExt;
use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::info::{InfoOptions, canonical_descriptor, flight_info};
use super::{BoxStream, FlightbayService};
use crate::error::Error;

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<Criteria>,
) -> Result<Response<BoxStream<FlightInfo>>, Status> {
    let access = authorize(service, &request).await?;
    let expression = request.into_inner().expression;
    let pattern = std::str::from_utf8(&expression)
        .map_err(|_| Error::invalid("ListFlights criteria must be a UTF-8 glob such as \"sales.*\""))?
        .trim()
        .to_string();
    let mut infos = Vec::new();
    for (flight, names) in service.store().list() {
        // Only what the caller may read is listed.
        let keep = access.can_read(flight.id())
            && (pattern.is_empty()
                || glob_match(&pattern, &flight.id().to_string())
                || names
                    .iter()
                    .any(|n| glob_match(&pattern, &n.name) || glob_match(&pattern, &n.to_string())));
        if keep {
            let descriptor = canonical_descriptor(&flight, &names);
            infos.push(
                flight_info(service.store(), &flight, &names, descriptor, InfoOptions::default()).map_err(Status::from),
            );
        }
    }
    Ok(Response::new(futures::stream::iter(infos).boxed()))
}

/// Shell-style glob: `*` matches any run of characters, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("sales.*", "sales.trips"));
        assert!(glob_match("tr?ps", "trips"));
        assert!(glob_match("*ip*", "trips"));
        assert!(!glob_match("sales.*", "default.trips"));
        assert!(!glob_match("trip", "trips"));
    }
}
