//! The one integration-test binary (it links once). Every test gets its own database
//! cloned from a migrated template on the run's private PostgreSQL cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop it loudly

mod access_review;
mod admin_pages;
mod archive;
mod audit_page;
mod audit_trail;
mod auth;
mod backup;
mod catalog;
mod checkpoints;
mod common;
mod crash;
mod db_roles;
mod destruction;
mod embedded_pg;
mod exports;
mod hardening;
mod home_audit;
mod i18n;
mod import;
mod input;
mod jobs;
mod leavers;
mod legal_hold;
mod loans;
mod outage;
mod pages;
#[path = "../fixtures/pdf.rs"]
mod pdf_fixture;
mod phones;
mod process;
mod record_pages;
mod request_pages;
mod requests;
mod retention;
mod review;
mod rotation;
mod routes;
mod scrub;
mod search_cjk;
mod stats;
mod storage;
mod totp;
mod viewer;
