//! flightbay's integration tests: one binary, one module per area, each against a real server on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod auth;
mod bad_input;
mod budget;
mod cli;
mod common;
mod corpus;
mod dashboard;
mod deep_input;
mod derive;
mod flight_sql;
mod hostile;
mod leaks;
mod observability;
mod put_get;
mod spill;
