//! The one integration-test binary (it links once). Every test gets its own database
//! cloned from a migrated template on the run's private PostgreSQL cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop it loudly

mod archive;
mod audit_page;
mod audit_trail;
mod auth;
mod backup;
mod checkpoints;
mod common;
mod crash;
mod db_roles;
mod embedded_pg;
mod exports;
mod hardening;
mod home_audit;
mod import;
mod input;
mod jobs;
mod loans;
mod outage;
mod pages;
#[path = "../fixtures/pdf.rs"]
mod pdf_fixture;
mod process;
mod requests;
mod rotation;
mod routes;
mod scrub;
mod storage;
mod viewer;
