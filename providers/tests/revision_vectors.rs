//! The revision algorithm alone, replayed over every history CouchDB 3.5 recorded in
//! `testdata/couchdb-revisions.json`. (The conformance suite replays the same histories
//! through each provider.)

use docstore_providers::{Document, Rev};
use serde_json::{Map, Value};

#[test]
fn every_recorded_history_reproduces_couchdb_revisions() {
    let text = include_str!("../../testdata/couchdb-revisions.json");
    let data: Value = serde_json::from_str(text).unwrap();
    let vectors = data["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 47);
    let mut checked = 0;
    for (n, vector) in vectors.iter().enumerate() {
        let mut parent: Option<Rev> = None;
        let history = vector["history"].as_array().unwrap();
        let revs = vector["revs"].as_array().unwrap();
        assert_eq!(history.len(), revs.len());
        for (step, expected) in history.iter().zip(revs) {
            let rev = match step["op"].as_str().unwrap() {
                "put" => {
                    let body = Document::from_json(step["body"].as_str().unwrap()).unwrap();
                    Rev::compute(parent.as_ref(), false, body.as_map())
                }
                "delete" => Rev::compute(parent.as_ref(), true, &Map::new()),
                other => panic!("unknown op {other}"),
            };
            assert_eq!(
                rev.to_string(),
                expected.as_str().unwrap(),
                "vector {n}: {step}"
            );
            parent = Some(rev);
            checked += 1;
        }
    }
    assert!(checked >= 47);
}
