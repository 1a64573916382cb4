//! Mango queries: the [`FindQuery`] every provider's `find` takes, index definitions, and the
//! query planner and executor the memory and embedded providers share.
//!
//! The planner reproduces CouchDB 3's choice of index (`mango_idx:get_usable_indexes`,
//! `mango_cursor_view:choose_best_index`), because the chosen index decides two visible
//! things: which documents can appear (a JSON index holds only documents that have every one
//! of its fields, so sorting by a field drops documents without it) and the order of the
//! results (index key, then document id; `_all_docs` is id order by raw bytes).
//!
//! - An index is usable when the selector requires each of its fields to exist (sort fields
//!   and `_id`/`_rev` excepted) and the sort can be read from it: the sort fields are a
//!   prefix of its fields once leading fields the selector fixes with `$eq` are dropped.
//!   `_all_docs` is usable without a sort, and for a sort on `_id` when the selector has a
//!   range condition on `_id`.
//! - No usable index means a sort nobody can serve: [`Error::InvalidQuery`] with
//!   [`NO_INDEX_FOR_SORT`] on every provider, as CouchDB refuses such a query.
//! - A usable JSON index always wins over `_all_docs` (CouchDB tries its view cursor first,
//!   even when no condition narrows the index). Of the usable JSON indexes, the one whose
//!   leading fields best match the selector's range conditions wins, then the one with fewer
//!   fields, then by name.
//!
//! Results are then filtered by the whole selector, ordered, and `skip`, `limit` and `fields`
//! are applied. Without a `limit` every match is returned (CouchDB would stop at 25).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::collate::compare;
use crate::mango::{self, FieldRange, Selector};
use crate::{Document, Error, Result, Rev};

/// The message of the [`Error::InvalidQuery`] for a sort no index can serve, the same on
/// every provider.
pub const NO_INDEX_FOR_SORT: &str = "no index can serve this sort; call ensure_index with the \
     sort fields (in sort order) first, and give the selector a condition on each other \
     indexed field";

/// Direction of a sort. CouchDB sorts all fields of one query in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortDirection {
    /// Smallest first (CouchDB collation).
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

impl SortDirection {
    #[cfg_attr(not(feature = "couchdb"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            SortDirection::Asc => "asc",
            SortDirection::Desc => "desc",
        }
    }
}

/// A Mango query: a selector plus optional `fields`, `sort`, `limit` and `skip`.
///
/// Build it with [`FindQuery::new`] and the builder methods, or parse a CouchDB `_find`
/// body with [`FindQuery::from_json`]. The selector is parsed once, here; a malformed or
/// unknown operator is an [`Error::InvalidQuery`] naming it.
#[derive(Debug, Clone)]
pub struct FindQuery {
    selector: Selector,
    fields: Option<Vec<String>>,
    sort: Vec<(String, SortDirection)>,
    limit: Option<usize>,
    skip: usize,
}

impl FindQuery {
    /// A query for the documents matching `selector` (a Mango selector object).
    pub fn new(selector: Value) -> Result<Self> {
        Ok(Self {
            selector: Selector::parse(&selector)?,
            fields: None,
            sort: Vec::new(),
            limit: None,
            skip: 0,
        })
    }

    /// Parses a CouchDB `_find` request body: `selector` (required), `fields`, `sort`,
    /// `limit`, `skip`. Other keys (`use_index`, `bookmark`, …) are refused by name rather
    /// than ignored.
    pub fn from_json(body: &Value) -> Result<Self> {
        let Value::Object(map) = body else {
            return Err(invalid(format!(
                "a query must be a JSON object, got {body}"
            )));
        };
        let selector = map
            .get("selector")
            .ok_or_else(|| invalid("a query needs a \"selector\" (use {} to match everything)"))?;
        let mut query = Self::new(selector.clone())?;
        for (key, value) in map {
            match key.as_str() {
                "selector" => {}
                "fields" => {
                    let fields = value
                        .as_array()
                        .and_then(|items| {
                            items
                                .iter()
                                .map(|f| f.as_str().map(str::to_owned))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| invalid("\"fields\" must be an array of field names"))?;
                    query = query.fields(fields);
                }
                "sort" => {
                    let items = value
                        .as_array()
                        .ok_or_else(|| invalid("\"sort\" must be an array"))?;
                    for item in items {
                        let (field, direction) = sort_item(item)?;
                        query = query.sort(field, direction);
                    }
                }
                "limit" => query = query.limit(count("limit", value)?),
                "skip" => query = query.skip(count("skip", value)?),
                other => {
                    return Err(invalid(format!(
                        "unsupported query option {other:?}; supported: selector, fields, sort, limit, skip"
                    )));
                }
            }
        }
        Ok(query)
    }

    /// Returns only these fields of each document (dotted paths allowed), exactly as
    /// CouchDB's `fields` does: `_id` and `_rev` only if listed. An empty list means all.
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        self.fields = (!fields.is_empty()).then_some(fields);
        self
    }

    /// Adds a sort field. Every sort field must use the same direction, and an index must
    /// cover the sort (see [`crate::DatabaseService::ensure_index`]).
    pub fn sort(mut self, field: impl Into<String>, direction: SortDirection) -> Self {
        self.sort.push((field.into(), direction));
        self
    }

    /// Returns at most `limit` documents. Without it, every match is returned.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Skips the first `skip` matches.
    pub fn skip(mut self, skip: usize) -> Self {
        self.skip = skip;
        self
    }

    /// The parsed selector.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// The requested fields, if the query projects.
    pub fn projection(&self) -> Option<&[String]> {
        self.fields.as_deref()
    }

    /// The sort fields and directions, in order.
    pub fn sort_fields(&self) -> &[(String, SortDirection)] {
        &self.sort
    }

    /// The limit, if any.
    pub fn limit_value(&self) -> Option<usize> {
        self.limit
    }

    /// The number of matches skipped.
    pub fn skip_value(&self) -> usize {
        self.skip
    }

    /// The sort direction; an error if the fields disagree (CouchDB's rule).
    pub(crate) fn direction(&self) -> Result<SortDirection> {
        let first = self.sort.first().map_or(SortDirection::Asc, |(_, d)| *d);
        if self.sort.iter().any(|(_, d)| *d != first) {
            return Err(invalid(
                "all sort fields must use the same direction (CouchDB sorts one way per query)",
            ));
        }
        Ok(first)
    }

    /// The `_find` body for one page: CouchDB's syntax, with the given limit, skip and
    /// bookmark.
    #[cfg_attr(not(feature = "couchdb"), allow(dead_code))]
    pub(crate) fn couchdb_body(&self, limit: usize, skip: usize, bookmark: Option<&str>) -> Value {
        let mut body = Map::new();
        body.insert("selector".into(), self.selector.as_json().clone());
        if let Some(fields) = &self.fields {
            body.insert("fields".into(), fields.clone().into());
        }
        if !self.sort.is_empty() {
            let sort: Vec<Value> = self
                .sort
                .iter()
                .map(|(f, d)| {
                    let mut item = Map::new();
                    item.insert(f.clone(), d.as_str().into());
                    Value::Object(item)
                })
                .collect();
            body.insert("sort".into(), sort.into());
        }
        body.insert("limit".into(), limit.into());
        body.insert("skip".into(), skip.into());
        if let Some(bookmark) = bookmark {
            body.insert("bookmark".into(), bookmark.into());
        }
        Value::Object(body)
    }
}

fn sort_item(item: &Value) -> Result<(String, SortDirection)> {
    match item {
        Value::String(field) => Ok((field.clone(), SortDirection::Asc)),
        Value::Object(map) if map.len() == 1 => {
            let (field, direction) = map.iter().next().ok_or_else(|| invalid("empty sort"))?;
            let direction = match direction.as_str() {
                Some("asc") => SortDirection::Asc,
                Some("desc") => SortDirection::Desc,
                _ => {
                    return Err(invalid(format!(
                        "sort direction of {field:?} must be \"asc\" or \"desc\", got {direction}"
                    )));
                }
            };
            Ok((field.clone(), direction))
        }
        other => Err(invalid(format!(
            "a sort item is a field name or {{\"field\": \"asc\"|\"desc\"}}, got {other}"
        ))),
    }
}

fn count(key: &str, value: &Value) -> Result<usize> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            invalid(format!(
                "\"{key}\" must be a non-negative integer, got {value}"
            ))
        })
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidQuery {
        reason: reason.into(),
    }
}

/// A JSON index: a name and the fields it indexes, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexDefinition {
    /// The index's name (on CouchDB also its design document, `_design/<name>`).
    pub name: String,
    /// The indexed fields, dotted paths, in order.
    pub fields: Vec<String>,
}

impl IndexDefinition {
    /// Checks a definition: a name of 1–128 characters from `A-Z a-z 0-9 _ - .` (it becomes a
    /// design document id on CouchDB), and at least one non-empty field.
    pub fn new(name: &str, fields: &[&str]) -> Result<Self> {
        let name_ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(invalid(format!(
                "index name {name:?} must be 1-128 characters from A-Z a-z 0-9 _ - ."
            )));
        }
        if fields.is_empty() || fields.iter().any(|f| f.is_empty()) {
            return Err(invalid(format!(
                "index {name:?} needs at least one field, and no field may be empty"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        })
    }

    /// The fields as split paths.
    pub(crate) fn columns(&self) -> Vec<Vec<String>> {
        self.fields.iter().map(|f| mango::split_path(f)).collect()
    }
}

/// What [`crate::DatabaseService::ensure_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexStatus {
    /// The index was created (or its definition replaced, under the same name).
    Created,
    /// An index of that name with those fields already existed.
    Exists,
}

/// How the memory and embedded providers answer a query.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The chosen JSON index's columns; `None` is `_all_docs`.
    pub columns: Option<Vec<Vec<String>>>,
    /// The chosen index's name, for providers that keep index data.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub index: Option<String>,
    /// The range of the chosen index's leading column the selector allows; `None` if empty
    /// (nothing can match).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub leading_range: Option<FieldRange>,
    pub descending: bool,
}

/// Chooses the index for `query` among `indexes`, as CouchDB 3 does (see the module doc).
pub(crate) fn plan(query: &FindQuery, indexes: &[IndexDefinition]) -> Result<Plan> {
    let descending = query.direction()? == SortDirection::Desc;
    let selector = &query.selector;
    let sort: Vec<Vec<String>> = query
        .sort
        .iter()
        .map(|(f, _)| mango::split_path(f))
        .collect();
    let id_column = vec!["_id".to_owned()];
    let indexable = selector.indexable_fields();

    // CouchDB's cursors in order of preference (`mango_cursor:group_indexes_by_type`): the
    // usable JSON indexes if there is any, else `_all_docs` (columns [_id]).
    let mut usable: Vec<(&IndexDefinition, Vec<Vec<String>>)> = Vec::new();
    for index in indexes {
        let cols = index.columns();
        let mut required: Vec<Vec<String>> = cols
            .iter()
            .filter(|c| !sort.contains(c) && !is_id_or_rev(c))
            .cloned()
            .collect();
        required.sort();
        required.dedup();
        if selector.has_required_fields(&required) && can_use_sort(&cols, &sort, selector) {
            usable.push((index, cols));
        }
    }

    // CouchDB's field ranges: one per indexable field; an empty range alone if any is empty.
    let mut ranges: Vec<Vec<String>> = Vec::new();
    for field in &indexable {
        if selector.range(field).is_none() {
            ranges = vec![field.clone()];
            break;
        }
        ranges.push(field.clone());
    }
    let difference = |cols: &[Vec<String>]| {
        let prefix = cols.iter().take_while(|c| ranges.contains(c)).count();
        ranges.len() - prefix
    };
    // `choose_best_index`: the prefix closest to the ranges, then fewer columns, then name.
    let chosen = usable.into_iter().min_by(|(ia, ca), (ib, cb)| {
        difference(ca)
            .cmp(&difference(cb))
            .then(ca.len().cmp(&cb.len()))
            .then_with(|| ia.name.as_bytes().cmp(ib.name.as_bytes()))
    });
    let (index, cols) = match chosen {
        Some((index, cols)) => (Some(index), cols),
        None => {
            let all_docs_cols = vec![id_column.clone()];
            let all_docs_usable = sort.is_empty()
                || (indexable.contains(&id_column)
                    && can_use_sort(&all_docs_cols, &sort, selector));
            if !all_docs_usable {
                return Err(invalid(NO_INDEX_FOR_SORT));
            }
            (None, all_docs_cols)
        }
    };
    let leading_range = selector.range(&cols[0]);
    Ok(match index {
        None => Plan {
            columns: None,
            index: None,
            leading_range,
            descending,
        },
        Some(index) => Plan {
            columns: Some(cols),
            index: Some(index.name.clone()),
            leading_range,
            descending,
        },
    })
}

fn is_id_or_rev(path: &[String]) -> bool {
    path.len() == 1 && (path[0] == "_id" || path[0] == "_rev")
}

/// CouchDB's `can_use_sort`: the sort fields are a prefix of the columns once leading
/// columns fixed by `$eq` are dropped.
fn can_use_sort(cols: &[Vec<String>], sort: &[Vec<String>], selector: &Selector) -> bool {
    match (cols.split_first(), sort.first()) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some((col, _)), Some(first)) if col == first => cols.starts_with(sort),
        (Some((col, rest)), Some(_)) => {
            selector.is_constant_field(col) && can_use_sort(rest, sort, selector)
        }
    }
}

/// The value of an index column in a stored document (`_id`/`_rev` come from the record).
pub(crate) fn column_value<'a>(
    col: &[String],
    id: &str,
    rev: &Rev,
    body: &'a Map<String, Value>,
) -> Option<Cow<'a, Value>> {
    match col {
        [f] if f == "_id" => Some(Cow::Owned(Value::String(id.to_owned()))),
        [f] if f == "_rev" => Some(Cow::Owned(Value::String(rev.to_string()))),
        _ => mango::lookup(body, col).map(Cow::Borrowed),
    }
}

/// One stored document offered to [`execute`]: live, not a design document.
pub(crate) struct Candidate {
    pub id: String,
    pub rev: Rev,
    /// Shared, so the memory provider copies only the bodies it returns.
    pub body: Arc<Map<String, Value>>,
}

/// Filters, orders, skips, limits and projects candidates as `plan` says. Candidates of an
/// `_all_docs` plan must come in id (byte) order, which lets an ascending scan stop early.
pub(crate) fn execute(
    query: &FindQuery,
    plan: &Plan,
    candidates: impl IntoIterator<Item = Result<Candidate>>,
) -> Result<Vec<Document>> {
    let wanted = query.limit.map(|l| l.saturating_add(query.skip));
    let mut matches: Vec<(Vec<Value>, Candidate)> = Vec::new();
    for candidate in candidates {
        let candidate = candidate?;
        let key = match &plan.columns {
            None => Vec::new(),
            Some(cols) => {
                let values: Option<Vec<Value>> = cols
                    .iter()
                    .map(|c| {
                        column_value(c, &candidate.id, &candidate.rev, &candidate.body)
                            .map(Cow::into_owned)
                    })
                    .collect();
                // A JSON index holds only documents with every one of its fields.
                let Some(values) = values else { continue };
                values
            }
        };
        if !query
            .selector
            .matches_stored(&candidate.id, &candidate.rev, &candidate.body)
        {
            continue;
        }
        matches.push((key, candidate));
        if plan.columns.is_none() && !plan.descending && Some(matches.len()) == wanted {
            break;
        }
    }
    match &plan.columns {
        None => matches.sort_by(|(_, a), (_, b)| a.id.as_bytes().cmp(b.id.as_bytes())),
        Some(_) => matches.sort_by(|(ka, a), (kb, b)| {
            ka.iter()
                .zip(kb)
                .map(|(x, y)| compare(x, y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()))
        }),
    }
    if plan.descending {
        matches.reverse();
    }
    let limit = query.limit.unwrap_or(usize::MAX);
    Ok(matches
        .into_iter()
        .skip(query.skip)
        .take(limit)
        .map(|(_, c)| {
            let body = Arc::try_unwrap(c.body).unwrap_or_else(|shared| (*shared).clone());
            project(Document::assemble(&c.id, &c.rev, body), query)
        })
        .collect())
}

/// Applies `fields` as CouchDB's `mango_fields:extract` does: each listed path that exists
/// is copied, in list order, into a new document (nested paths into nested objects).
pub(crate) fn project(doc: Document, query: &FindQuery) -> Document {
    let Some(fields) = &query.fields else {
        return doc;
    };
    let source = doc.into_map();
    let mut out = Map::new();
    for field in fields {
        let path = mango::split_path(field);
        if let Some(value) = mango::lookup(&source, &path) {
            set_path(&mut out, &path, value.clone());
        }
    }
    Document::from(out)
}

fn set_path(map: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut target = map;
    for key in parents {
        let slot = target
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        target = next;
    }
    target.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn idx(name: &str, fields: &[&str]) -> IndexDefinition {
        IndexDefinition::new(name, fields).unwrap()
    }

    fn chosen(query: Value, indexes: &[IndexDefinition]) -> Result<Option<String>> {
        plan(&FindQuery::from_json(&query)?, indexes).map(|p| p.index)
    }

    #[test]
    fn sort_needs_a_covering_index() {
        let err = chosen(json!({"selector": {}, "sort": ["age"]}), &[]).unwrap_err();
        assert!(err.to_string().contains(NO_INDEX_FOR_SORT), "{err}");
        // Sorting by _id needs a range condition on _id (CouchDB's _all_docs rule).
        assert!(chosen(json!({"selector": {"a": 1}, "sort": ["_id"]}), &[]).is_err());
        assert_eq!(
            chosen(
                json!({"selector": {"_id": {"$gt": null}}, "sort": ["_id"]}),
                &[]
            )
            .unwrap(),
            None
        );
        let age = [idx("by-age", &["age"])];
        assert_eq!(
            chosen(json!({"selector": {}, "sort": [{"age": "desc"}]}), &age).unwrap(),
            Some("by-age".into())
        );
        // A leading column fixed by $eq may be skipped by the sort.
        let two = [idx("ta", &["type", "age"])];
        assert_eq!(
            chosen(json!({"selector": {"type": "x"}, "sort": ["age"]}), &two).unwrap(),
            Some("ta".into())
        );
        assert!(
            chosen(
                json!({"selector": {"type": {"$gt": "x"}}, "sort": ["age"]}),
                &two
            )
            .is_err()
        );
        let mixed = json!({"selector": {"age": 1}, "sort": ["age", {"type": "desc"}]});
        assert!(
            chosen(mixed, &two)
                .unwrap_err()
                .to_string()
                .contains("same direction")
        );
    }

    #[test]
    fn index_choice_follows_couchdb() {
        let indexes = [
            idx("b-age", &["age"]),
            idx("a-age", &["age"]),
            idx("an", &["age", "name"]),
        ];
        // Unusable when the selector does not require the field.
        assert_eq!(
            chosen(json!({"selector": {"x": 1}}), &indexes).unwrap(),
            None
        );
        // Equal prefix difference: fewer columns, then name.
        assert_eq!(
            chosen(json!({"selector": {"age": {"$gt": 3}}}), &indexes).unwrap(),
            Some("a-age".into())
        );
        // A longer matched prefix wins.
        assert_eq!(
            chosen(json!({"selector": {"age": 3, "name": "x"}}), &indexes).unwrap(),
            Some("an".into())
        );
        // A usable JSON index wins over _all_docs even without a range: $or (every branch
        // requires the field), $exists, $ne, $in (genuine CouchDB 3.5's `_explain`).
        for selector in [
            json!({"$or": [{"age": 1}, {"age": 2}]}),
            json!({"age": {"$exists": true}}),
            json!({"age": {"$ne": 1}}),
            json!({"age": {"$in": [1]}, "name": {"$gt": 0}}),
            json!({"$not": {"age": {"$gt": 1}}}),
        ] {
            assert_eq!(
                chosen(json!({ "selector": selector }), &indexes).unwrap(),
                Some("a-age".into()),
                "{selector}"
            );
        }
        assert_eq!(
            chosen(
                json!({"selector": {"$or": [{"age": 1}, {"x": 2}]}}),
                &indexes
            )
            .unwrap(),
            None
        );
        // $exists: false does not require the field.
        assert_eq!(
            chosen(json!({"selector": {"age": {"$exists": false}}}), &indexes).unwrap(),
            None
        );
    }

    #[test]
    fn ranges_narrow_and_detect_empty() {
        let q = FindQuery::new(json!({"a": {"$gt": 5, "$lt": 3}})).unwrap();
        assert!(q.selector().range(&["a".into()]).is_none());
        let q = FindQuery::new(json!({"a": {"$gte": 5, "$lte": 5}})).unwrap();
        assert!(q.selector().range(&["a".into()]).is_some());
        let q = FindQuery::new(json!({"a": {"$gt": 5, "$lte": 5}})).unwrap();
        assert!(q.selector().range(&["a".into()]).is_none());
    }

    #[test]
    fn projection_copies_listed_paths_only() {
        let doc = Document::from_value(
            json!({"_id": "x", "_rev": "1-a", "a": {"b": 1, "c": 2}, "d": [5, 6]}),
        )
        .unwrap();
        let q = FindQuery::new(json!({}))
            .unwrap()
            .fields(["a.b", "d.1", "missing", "_id"]);
        assert_eq!(
            project(doc, &q).into_value(),
            json!({"a": {"b": 1}, "d": {"1": 6}, "_id": "x"})
        );
    }

    #[test]
    fn bad_options_are_named() {
        for (body, needle) in [
            (json!({"selector": {}, "use_index": "x"}), "use_index"),
            (json!({"fields": []}), "selector"),
            (json!({"selector": {}, "limit": -1}), "limit"),
            (json!({"selector": {}, "sort": [{"a": "up"}]}), "asc"),
            (json!({"selector": {"a": {"$foo": 1}}}), "$foo"),
        ] {
            let err = FindQuery::from_json(&body).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
        assert!(IndexDefinition::new("a/b", &["x"]).is_err());
        assert!(IndexDefinition::new("ok", &[]).is_err());
    }
}
