//! The conformance suite: one `pub async fn` per rule of the contract (DESIGN.md, and the
//! `# Contract` of [`DatabaseService`]), run against every provider.
//!
//! Each function takes the service under test, works in freshly, uniquely named databases
//! (so the suite can run again and again against a shared server) and removes them at the end.
//! Assertions are on exact values: revisions, error variants, orders.
//!
//! Use [`conformance_tests!`](crate::conformance_tests) in an integration test to get one
//! `#[tokio::test]` per behaviour, or call [`run_all`].
//!
//! The functions take `&Arc<dyn DatabaseService>` rather than `&dyn DatabaseService` because
//! the concurrency rules are checked with tasks spawned on several runtime threads.
//!
//! The rules live in one file per area: `documents` (names, ids, bodies, revisions, save and
//! delete), `bulk`, `listing` (listings, pagination, changes, databases), `selectors` (what a
//! `find` selector matches), `queries` (how `find` serves it: index choice, sort, limit,
//! `ensure_index`), `replication` (local documents and replication writes), `trees`
//! (revision trees, against scenarios recorded from CouchDB), `attachments` (against
//! scenarios recorded from CouchDB), `attachment_api`, `concurrency` and `watch` (live changes). The list of behaviours is written once, in `__conformance_behaviours!`
//! below; a new rule is a function in its area's file and a name in that list.

use std::sync::Arc;

use serde_json::Value;

use crate::{DatabaseService, Document, Error};

mod attachment_api;
mod attachments;
mod bulk;
mod concurrency;
mod documents;
mod listing;
mod queries;
mod replication;
mod selectors;
mod trees;
mod watch;

pub use attachment_api::*;
pub use attachments::*;
pub use bulk::*;
pub use concurrency::*;
pub use documents::*;
pub use listing::*;
pub use queries::*;
pub use replication::*;
pub use selectors::*;
pub use trees::*;
pub use watch::*;

/// The service under test.
pub type Service = Arc<dyn DatabaseService>;

fn doc(value: Value) -> Document {
    Document::from_value(value).expect("test documents are objects")
}

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter()
        .map(|d| d.id().expect("listed documents carry _id").to_owned())
        .collect()
}

/// The kind of error, for exact assertions on variants.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    NotFound,
    Conflict,
    InvalidDatabaseName,
    InvalidDocumentId,
    InvalidDocument,
    InvalidQuery,
    InvalidAttachment,
    MissingStub,
    Other,
}

fn kind<T: std::fmt::Debug>(r: &crate::Result<T>) -> Kind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(Error::NotFound { .. }) => Kind::NotFound,
        Err(Error::Conflict { .. }) => Kind::Conflict,
        Err(Error::InvalidDatabaseName { .. }) => Kind::InvalidDatabaseName,
        Err(Error::InvalidDocumentId { .. }) => Kind::InvalidDocumentId,
        Err(Error::InvalidDocument { .. }) => Kind::InvalidDocument,
        Err(Error::InvalidQuery { .. }) => Kind::InvalidQuery,
        Err(Error::InvalidAttachment { .. }) => Kind::InvalidAttachment,
        Err(Error::MissingStub { .. }) => Kind::MissingStub,
        Err(_) => Kind::Other,
    }
}

/// Runs every behaviour in turn against one service.
pub async fn run_all(svc: &Service) {
    macro_rules! each {
        ($($name:ident),* $(,)?) => { $( $name(svc).await; )* };
    }
    crate::__conformance_behaviours!(each;);
}

/// Generates one `#[tokio::test]` per conformance behaviour.
///
/// `$make` is an async expression evaluating to the [`Service`] under test; it is evaluated
/// once per test. Behaviours a server cannot be held to are named after `skip:`, each with an
/// expression giving `Option<&str>`: `Some(reason)` skips (evaluated when the test runs, so it
/// can depend on which server was found). A skipped behaviour still has its test, which prints
/// `SKIPPED <name>: <reason>`; skips are named, never silent.
///
/// ```text
/// docstore_providers::conformance_tests!(async { make_service().await });
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!($make; skip: []);
    };
    ($make:expr; skip: [$($skip:ident => $why:expr),* $(,)?]) => {
        $crate::__conformance_behaviours!($crate::__conformance_each; $make; [$($skip => $why),*];);
    };
}

/// Every behaviour of the suite, once: calls `$callback!(<prefix tokens> name, name, …)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_behaviours {
    ($callback:path; $($prefix:tt)*) => {
        $callback!($($prefix)*
            database_names_are_validated,
            document_ids_are_validated,
            awkward_ids_round_trip,
            reserved_fields_are_rejected,
            revisions_have_couchdb_shape_and_grow,
            revisions_match_recorded_couchdb,
            save_without_rev_upserts,
            save_with_rev_is_optimistic,
            conflict_errors_name_the_document,
            concurrent_updates_lose_nothing,
            update_rereads_after_a_conflicting_write,
            concurrent_conditional_saves_have_one_winner,
            concurrent_revless_saves_all_succeed,
            watch_checks_its_arguments,
            watch_starts_where_asked,
            watch_includes_documents_and_tombstones,
            watch_filters_with_a_selector,
            watch_sees_concurrent_writers,
            watch_ends_when_the_database_is_deleted,
            delete_then_get_is_not_found,
            recreate_after_delete_continues_generation,
            reads_never_create_databases,
            listing_is_in_byte_order,
            pagination_has_no_gaps_or_repeats,
            bulk_results_keep_input_order,
            large_bulk_saves_keep_order,
            changes_include_deletions,
            local_documents_are_invisible,
            databases_list_sorted_and_delete,
            large_documents_round_trip,
            unicode_bodies_round_trip,
            numbers_round_trip,
            conflict_scenarios_match_recorded_couchdb,
            conflicts_resolve_to_one_live_leaf,
            revless_writes_go_on_the_winner,
            returned_documents_are_copies,
            typed_helpers_round_trip,
            find_selects_by_equality_and_paths,
            find_comparisons_collate_across_types,
            find_array_operators,
            find_type_exists_mod_regex,
            find_logical_operators,
            find_fields_returns_exactly_them,
            find_sort_requires_an_index,
            find_limit_and_skip,
            find_without_limit_returns_everything,
            find_indexes_follow_writes,
            find_indexes_stay_invisible,
            find_errors_are_typed,
            put_revisions_keep_couchdb_winners,
            revision_histories_travel,
            find_sort_skips_fields_fixed_by_eq,
            find_missing_fields_match_only_exists_false,
            find_not_inside_a_field,
            find_sort_by_id_needs_an_id_condition,
            ensure_index_replaces_a_redefined_index,
            find_collation_matches_recorded_couchdb,
            find_negations_are_normalized,
            find_empty_and_mixed_selectors,
            find_paths_tell_missing_from_bad,
            find_couchdb_3_5_operators,
            find_prefers_a_usable_json_index,
            revs_diff_answers_as_couchdb,
            attachment_scenarios_match_recorded_couchdb,
            attachments_round_trip_and_share,
            attachment_bad_input_is_typed,
            attachments_stream_in_pieces,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ($make:expr; [$($skip:ident => $why:expr),*]; $($name:ident),* $(,)?) => {
        /// The reason to skip a behaviour on this provider, if any (evaluated per test).
        fn __conformance_skip(name: &str) -> Option<String> {
            let _ = name;
            $(
                if name == stringify!($skip) {
                    let why: Option<&str> = $why;
                    if let Some(why) = why {
                        return Some(why.to_string());
                    }
                }
            )*
            None
        }
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(why) = __conformance_skip(stringify!($name)) {
                    println!("SKIPPED {}: {}", stringify!($name), why);
                    return;
                }
                let svc: $crate::conformance::Service = $make.await;
                $crate::conformance::$name(&svc).await;
            }
        )*
    };
}
