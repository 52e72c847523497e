//! The OpenAPI 3.1 document, generated from [`super::route_table`] — the same table the
//! router is built from — so a route cannot exist without being documented, or the other way
//! round.
//!
//! Each route's parameters and request body come from its handler's extractors: the
//! [`Describe`] bound on [`super::route`] walks the handler's argument types, and each
//! extractor ([`Part`]) adds what it reads (an `ApiJson<T>` body with `T`'s JSON Schema, an
//! `ApiQuery<Q>` query with `Q`'s fields, the write headers of `WriteMeta`, the
//! `consistency` parameter). Path parameters come from the path template, typed by the
//! handler's `ApiPath<T>`. Schemas are JSON Schema 2020-12 (schemars), OpenAPI 3.1's dialect,
//! derived from the same serde types that decode the requests.

use axum::http::Method;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::{ApiJson, ApiPath, ApiQuery, Consistency, WriteMeta};
use crate::auth::Access;

/// Builds one operation while its extractors describe themselves.
pub struct OpBuilder<'g> {
    gen: &'g mut SchemaGenerator,
    params: Vec<Value>,
    body: Option<Value>,
    path_types: Vec<&'static str>,
    notes: Vec<String>,
}

impl OpBuilder<'_> {
    fn json_body<T: JsonSchema>(&mut self) {
        let schema = self.gen.subschema_for::<T>();
        self.body = Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}));
    }

    fn raw_body(&mut self) {
        self.body = Some(json!({"content": {"application/octet-stream": {"schema": {"type": "string", "contentEncoding": "binary"}}}}));
    }

    /// One query parameter per property of `Q` (a struct of optional fields).
    fn query<Q: JsonSchema>(&mut self) {
        let schema = self.gen.root_schema_for::<Q>();
        let mut root = schema.to_value();
        // Definitions a field refers to go to the shared components.
        if let Some(Value::Object(defs)) = root.as_object_mut().and_then(|o| o.remove("$defs")) {
            for (k, v) in defs {
                self.gen.definitions_mut().insert(k, v);
            }
        }
        let required: Vec<String> =
            root["required"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
        if let Some(props) = root["properties"].as_object() {
            for (name, schema) in props {
                let mut schema = schema.clone();
                rewrite_refs(&mut schema);
                let description = schema.as_object_mut().and_then(|o| o.remove("description"));
                let mut p = json!({"name": name, "in": "query", "required": required.contains(name), "schema": schema});
                if let Some(d) = description {
                    p["description"] = d;
                }
                self.params.push(p);
            }
        }
    }

    /// The optional write headers are described in words, not as parameters: a request may
    /// always carry other headers, which a header parameter list would forbid.
    fn write_headers(&mut self) {
        self.notes.push(format!(
            "Optional headers: `Idempotency-Key` (up to {} bytes; a retry with the same key returns the first outcome instead of applying twice), \
             `X-Roster-Comment` (up to {} bytes, recorded with the revision), `X-Roster-Expected-Revision` (refuse with 409 unless the \
             configuration is at that revision), and on an --insecure node `X-Roster-Actor`.",
            crate::domain::IDEMPOTENCY_KEY_MAX_LEN,
            crate::domain::COMMENT_MAX_LEN
        ));
    }

    fn consistency(&mut self) {
        self.params.push(json!({
            "name": "consistency", "in": "query", "required": false,
            "schema": {"type": "string", "enum": ["linearizable", "local"], "default": "linearizable"},
            "description": "linearizable (default): read after a read barrier; local: this node's applied state",
        }));
    }
}

/// `#/$defs/X` (where schemars puts a standalone schema's definitions) → the components.
fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{name}");
                }
            }
            o.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// An extractor's contribution to its operation's description.
pub trait Part {
    fn describe(_: &mut OpBuilder<'_>) {}
}

impl<S> Part for axum::extract::State<S> {}
impl<T: JsonSchema> Part for ApiJson<T> {
    fn describe(op: &mut OpBuilder<'_>) {
        op.json_body::<T>();
    }
}
impl<T: JsonSchema> Part for ApiQuery<T> {
    fn describe(op: &mut OpBuilder<'_>) {
        op.query::<T>();
    }
}
impl<T: PathTypes> Part for ApiPath<T> {
    fn describe(op: &mut OpBuilder<'_>) {
        op.path_types = T::types();
    }
}
impl Part for WriteMeta {
    fn describe(op: &mut OpBuilder<'_>) {
        op.write_headers();
    }
}
impl Part for Consistency {
    fn describe(op: &mut OpBuilder<'_>) {
        op.consistency();
    }
}
impl Part for axum::body::Bytes {
    fn describe(op: &mut OpBuilder<'_>) {
        op.raw_body();
    }
}
impl Part for axum::http::HeaderMap {}
impl<T> Part for Option<axum::Extension<T>> {}
impl<T> Part for axum::Extension<T> {}

/// The JSON types of a path's parameters, in template order.
pub trait PathTypes {
    fn types() -> Vec<&'static str>;
}
impl PathTypes for String {
    fn types() -> Vec<&'static str> {
        vec!["string"]
    }
}
impl PathTypes for u64 {
    fn types() -> Vec<&'static str> {
        vec!["integer"]
    }
}
impl<A: PathTypes, B: PathTypes> PathTypes for (A, B) {
    fn types() -> Vec<&'static str> {
        [A::types(), B::types()].concat()
    }
}
impl<A: PathTypes, B: PathTypes, C: PathTypes> PathTypes for (A, B, C) {
    fn types() -> Vec<&'static str> {
        [A::types(), B::types(), C::types()].concat()
    }
}

/// A handler's argument types (axum's `(marker, args...)` tuple) describing themselves.
pub trait Describe {
    fn describe(op: &mut OpBuilder<'_>);
}

macro_rules! describe_tuple {
    ($($t:ident),*) => {
        impl<M, $($t: Part),*> Describe for (M, $($t,)*) {
            #[allow(unused_variables)]
            fn describe(op: &mut OpBuilder<'_>) {
                $( <$t as Part>::describe(op); )*
            }
        }
    };
}
describe_tuple!();
describe_tuple!(A);
describe_tuple!(A, B);
describe_tuple!(A, B, C);
describe_tuple!(A, B, C, D);
describe_tuple!(A, B, C, D, E);
describe_tuple!(A, B, C, D, E, F);

/// The statuses every operation may answer besides its success, with the shared error body.
const ERROR_STATUSES: [(&str, &str); 9] = [
    ("400", "The request is malformed or refused on its merits (code says why); nothing changed."),
    ("401", "No valid credentials."),
    ("403", "The token's role may not use this route."),
    ("404", "The resource (or route) does not exist."),
    ("409", "A conflict: the name exists, the revision moved, a confirmation is needed, or a member cannot take it yet."),
    ("413", "The body is larger than the node accepts."),
    ("415", "The body is not JSON."),
    ("429", "Too many requests or watches; retry later."),
    ("503", "No leader or no quorum now, or the outcome is unknown: retry with the same idempotency key."),
];

fn path_params(path: &str, types: &[&'static str]) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .enumerate()
        .map(|(i, name)| {
            let ty = types.get(i).copied().unwrap_or("string");
            json!({"name": name, "in": "path", "required": true, "schema": {"type": ty}})
        })
        .collect()
}

/// The document for this build: every route of the table, with its access rule as the
/// operation's security and role list.
pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| s.definitions_path = "/components/schemas".into());
    let mut gen = settings.into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for r in super::route_table() {
        let mut op = OpBuilder { gen: &mut gen, params: Vec::new(), body: None, path_types: Vec::new(), notes: Vec::new() };
        (r.describe)(&mut op);
        let OpBuilder { params, body, path_types, notes, .. } = op;
        let mut parameters = path_params(r.path, &path_types);
        parameters.extend(params);
        let mut responses = Map::new();
        let returns = r.returns.map(|f| f(&mut gen).to_value()).unwrap_or_else(|| json!({}));
        let content = match success_content_type(r.path) {
            "application/json" => json!({"application/json": {"schema": returns}}),
            other => json!({other: {"schema": {"type": "string"}}}),
        };
        let success = json!({"description": "Success", "content": content});
        responses.insert("200".into(), success.clone());
        if r.method != Method::GET {
            responses.insert("201".into(), success);
        }
        if r.path.ends_with("/watch") {
            responses.insert("204".into(), json!({"description": "Nothing changed before the wait ended, or the node is stopping."}));
        }
        for (status, what) in ERROR_STATUSES {
            responses.insert(status.into(), json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
        }
        let (security, roles) = match &r.access {
            Access::Open => (json!([]), "anyone, without credentials".to_string()),
            Access::Metrics => (json!([{"bearer": []}]), "a reading role (open with --metrics-public)".to_string()),
            Access::Roles(roles) => (json!([{"bearer": []}]), roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")),
            Access::AgentSelf => (json!([{"bearer": []}]), "admin, or the agent named by {id}".to_string()),
            Access::Peer => (json!([{"bearer": []}]), "another node (cluster secret)".to_string()),
        };
        let mut operation = json!({
            "operationId": operation_id(&r.method, r.path),
            "summary": format!("{} {}", r.method, r.path),
            "description": std::iter::once(format!("Who may call it: {roles}.")).chain(notes).collect::<Vec<_>>().join(" "),
            "parameters": parameters,
            "responses": responses,
            "security": security,
        });
        if let Some(b) = body {
            operation["requestBody"] = b;
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method.as_str().to_ascii_lowercase()] = operation;
    }
    let mut schemas = gen.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "description": "A stable machine-readable reason, e.g. not_found, revision_mismatch."},
                "message": {"type": "string", "description": "For people."}
            }}}
        }),
    );
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Roster",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Roster's HTTP API: run-time servers, agent clusters, task failover lists, changesets, history and cluster operations. Generated from the route table the server is built from.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API token (rst_...)."}},
        },
        "security": [{"bearer": []}],
    })
}

/// What a route answers on success when it is not JSON.
fn success_content_type(path: &str) -> &'static str {
    match path {
        "/v1/history/checkpoint" | "/v1/history/public-key" => "text/plain",
        "/v1/history/export" => "application/x-ndjson",
        "/v1/backup" => "application/octet-stream",
        "/metrics" => "text/plain",
        _ => "application/json",
    }
}

/// `get_v1_servers_name`-style ids, unique per method and path.
fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(seg.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }));
    }
    while id.contains("__") {
        id = id.replace("__", "_");
    }
    id.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the table is in the document once, with its method, and nothing else
    /// is; every reference resolves.
    #[test]
    fn the_document_has_exactly_the_route_table() {
        let doc = document();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        let mut table: Vec<(String, String)> = super::super::route_rules().into_iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in text.split("\"$ref\":\"").skip(1) {
            let target = &r[..r.find('"').unwrap()];
            let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {target}"));
            assert!(schemas.contains_key(name), "$ref {target} does not resolve");
        }
        let ids: std::collections::BTreeSet<&str> = doc["paths"].as_object().unwrap().values().flat_map(|ops| ops.as_object().unwrap().values().map(|o| o["operationId"].as_str().unwrap())).collect();
        assert_eq!(ids.len(), table.len(), "operation ids are unique");
        // The request types are the wire types: a change list is documented once.
        assert!(schemas.contains_key("Change"), "{:?}", schemas.keys().collect::<Vec<_>>());
        let post_commands = &doc["paths"]["/v1/commands"]["post"];
        assert_eq!(post_commands["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/CommandRequest");
    }

    /// Every JSON answer has a declared type (`RouteSpec::returns`), so a client can be
    /// generated from the document and schemathesis checks each body against it; the only
    /// exceptions answer arbitrary JSON by nature.
    #[test]
    fn every_json_answer_has_a_schema() {
        let doc = document();
        let untyped_by_nature = ["/v1/openapi.json", "/internal/agent-contacts"];
        let mut missing = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let Some(schema) = op["responses"]["200"]["content"].get("application/json").map(|c| &c["schema"]) else { continue };
                if schema == &json!({}) && !untyped_by_nature.contains(&path.as_str()) {
                    missing.push(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        assert!(missing.is_empty(), "routes answering JSON without a declared type: {missing:?}");
        let writes = &doc["paths"]["/v1/servers"]["post"]["responses"]["201"]["content"]["application/json"]["schema"];
        assert_eq!(writes["$ref"], "#/components/schemas/Outcome", "a write answers its outcome");
    }
}

/// `GET /v1/openapi.json`: the document, built once.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    axum::Json(DOC.get_or_init(document).clone()).into_response()
}
