//! The Classroom API v1 discovery document (Google API Discovery Service format) and a
//! validator that accepts only the requests it defines: the method's HTTP verb and path,
//! its query parameters (and the API-wide ones), and request bodies whose every field is in
//! the method's request schema, with the declared types and enum values.
//!
//! The embedded copy, `crates/testkit/google/classroom.v1.json`, is Google's published
//! discovery document for the Classroom API (revision 20261028), unchanged, as distributed in
//! the static discovery cache of the `google-api-python-client` package 2.202.0
//! (`googleapiclient/discovery_cache/documents/classroom.v1.json`, Apache License 2.0).
//! Refresh it from a newer release of that package.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The embedded discovery document.
pub const CLASSROOM_V1_JSON: &str = include_str!("../../google/classroom.v1.json");

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
}

/// The JSON type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Integer,
    Number,
    Boolean,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub location: Location,
    pub kind: ParamKind,
    pub repeated: bool,
    pub required: bool,
    /// Allowed values; empty when any value is allowed.
    pub enum_values: Vec<String>,
    /// `int32`, `google-fieldmask`, …
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}` with literal text around it, as in `{id}:return`.
    Variable {
        name: String,
        prefix: String,
        suffix: String,
    },
}

/// One method of the document.
#[derive(Debug, Clone)]
pub struct DiscoveredMethod {
    /// `classroom.courses.courseWork.studentSubmissions.patch`.
    pub id: String,
    pub http_method: String,
    /// The path template relative to the root URL, `v1/courses/{courseId}/students`.
    pub path: String,
    segments: Vec<Segment>,
    pub params: BTreeMap<String, Param>,
    /// The request schema name, for methods that take a body.
    pub request: Option<String>,
    pub response: Option<String>,
    /// The scopes of which a token must carry at least one.
    pub scopes: Vec<String>,
}

impl DiscoveredMethod {
    /// Literal characters in the template: the more, the more specific the match.
    fn specificity(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.len() + 1,
                Segment::Variable { prefix, suffix, .. } => prefix.len() + suffix.len(),
            })
            .sum()
    }

    fn match_path(&self, segments: &[String]) -> Option<BTreeMap<String, String>> {
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut vars = BTreeMap::new();
        for (template, actual) in self.segments.iter().zip(segments) {
            match template {
                Segment::Literal(l) if l == actual => {}
                Segment::Literal(_) => return None,
                Segment::Variable {
                    name,
                    prefix,
                    suffix,
                } => {
                    let value = actual
                        .strip_prefix(prefix.as_str())?
                        .strip_suffix(suffix.as_str())?;
                    if value.is_empty() {
                        return None;
                    }
                    vars.insert(name.clone(), value.to_owned());
                }
            }
        }
        Some(vars)
    }
}

/// Why a request is not one the discovery document defines. The `Display` text follows
/// Google's own wording for the same refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestInvalid {
    #[error("The requested URL {method} {path} was not found on this server.")]
    UnknownPath { method: String, path: String },
    #[error(
        "Invalid JSON payload received. Unknown name \"{0}\": Cannot bind query parameter. Field '{0}' could not be found in request message."
    )]
    UnknownQueryParameter(String),
    #[error("Invalid value for parameter '{0}': it may be given only once.")]
    RepeatedQueryParameter(String),
    #[error("Invalid value at '{name}' ({expected}), \"{value}\"")]
    InvalidQueryValue {
        name: String,
        expected: &'static str,
        value: String,
    },
    #[error("Required parameter '{0}' is missing.")]
    MissingParameter(String),
    #[error("Invalid JSON payload received. {0}")]
    BodyNotJson(&'static str),
    #[error("Invalid JSON payload received. This method does not take a request body.")]
    BodyNotAllowed,
    #[error("Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field.")]
    UnknownField { at: String, name: String },
    #[error("Invalid value at '{at}' ({expected})")]
    WrongType { at: String, expected: &'static str },
    #[error("Invalid value at '{at}': not one of the values the API defines")]
    InvalidEnum { at: String },
}

impl RequestInvalid {
    /// The HTTP status Google answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownPath { .. } => 404,
            _ => 400,
        }
    }
}

/// A request the document defines, with its parameters read.
#[derive(Debug, Clone)]
pub struct ValidatedRequest<'a> {
    pub method: &'a DiscoveredMethod,
    pub path_params: BTreeMap<String, String>,
    pub query: BTreeMap<String, Vec<String>>,
    pub body: Option<Value>,
}

impl ValidatedRequest<'_> {
    pub fn path(&self, name: &str) -> &str {
        self.path_params.get(name).map_or("", String::as_str)
    }

    pub fn query_one(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn query_all(&self, name: &str) -> &[String] {
        self.query.get(name).map_or(&[], Vec::as_slice)
    }
}

/// Why a discovery document could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    #[error("the discovery document could not be read: {0}")]
    Io(#[from] std::io::Error),
    #[error("the discovery document is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the discovery document is malformed: {0}")]
    Malformed(String),
}

/// A parsed discovery document.
#[derive(Debug)]
pub struct Discovery {
    revision: String,
    methods: Vec<DiscoveredMethod>,
    global: BTreeMap<String, Param>,
    schemas: BTreeMap<String, Value>,
    scopes: BTreeSet<String>,
}

impl Discovery {
    /// The embedded Classroom v1 document, parsed once per process.
    ///
    /// # Panics
    /// Never in practice: the embedded document is a constant that parses (a unit test
    /// checks it).
    pub fn classroom_v1() -> Arc<Discovery> {
        static DOC: OnceLock<Arc<Discovery>> = OnceLock::new();
        DOC.get_or_init(|| {
            Arc::new(
                Discovery::from_json(CLASSROOM_V1_JSON)
                    .expect("the embedded discovery document parses"),
            )
        })
        .clone()
    }

    /// Reads a discovery document from a file.
    pub fn load(path: &Path) -> Result<Self, DiscoveryError> {
        Self::from_json(&std::fs::read_to_string(path)?)
    }

    pub fn from_json(text: &str) -> Result<Self, DiscoveryError> {
        let doc: Value = serde_json::from_str(text)?;
        let malformed = |what: &str| DiscoveryError::Malformed(what.to_owned());
        let global = match doc.get("parameters").and_then(Value::as_object) {
            Some(p) => p
                .iter()
                .map(|(k, v)| Ok((k.clone(), parse_param(k, v)?)))
                .collect::<Result<_, DiscoveryError>>()?,
            None => BTreeMap::new(),
        };
        let schemas = doc
            .get("schemas")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("no schemas"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let scopes = doc
            .pointer("/auth/oauth2/scopes")
            .and_then(Value::as_object)
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        let mut methods = Vec::new();
        collect_methods(
            doc.get("resources")
                .ok_or_else(|| malformed("no resources"))?,
            &mut methods,
        )?;
        if methods.is_empty() {
            return Err(malformed("no methods"));
        }
        Ok(Self {
            revision: doc
                .get("revision")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            methods,
            global,
            schemas,
            scopes,
        })
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// Every OAuth scope the API defines.
    pub fn scopes(&self) -> &BTreeSet<String> {
        &self.scopes
    }

    pub fn methods(&self) -> impl Iterator<Item = &DiscoveredMethod> {
        self.methods.iter()
    }

    pub fn method(&self, id: &str) -> Option<&DiscoveredMethod> {
        self.methods.iter().find(|m| m.id == id)
    }

    /// The method a verb and path (`/v1/courses/1/students`, percent-encoded as sent) name,
    /// with the path parameters decoded.
    pub fn match_path(
        &self,
        http_method: &str,
        path: &str,
    ) -> Result<(&DiscoveredMethod, BTreeMap<String, String>), RequestInvalid> {
        let unknown = || RequestInvalid::UnknownPath {
            method: http_method.to_owned(),
            path: path.to_owned(),
        };
        let segments: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect::<Option<_>>()
            .ok_or_else(unknown)?;
        self.methods
            .iter()
            .filter(|m| m.http_method.eq_ignore_ascii_case(http_method))
            .filter_map(|m| m.match_path(&segments).map(|vars| (m, vars)))
            .max_by_key(|(m, _)| m.specificity())
            .ok_or_else(unknown)
    }

    /// Checks a whole request: method and path, query parameters, body.
    pub fn validate(
        &self,
        http_method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<ValidatedRequest<'_>, RequestInvalid> {
        let (method, path_params) = self.match_path(http_method, path)?;
        let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in query {
            grouped.entry(k.clone()).or_default().push(v.clone());
        }
        for (name, values) in &grouped {
            let param = method
                .params
                .get(name)
                .filter(|p| p.location == Location::Query)
                .or_else(|| self.global.get(name))
                .ok_or_else(|| RequestInvalid::UnknownQueryParameter(name.clone()))?;
            if values.len() > 1 && !param.repeated {
                return Err(RequestInvalid::RepeatedQueryParameter(name.clone()));
            }
            for v in values {
                check_query_value(name, param, v)?;
            }
        }
        for (name, p) in &method.params {
            if p.required && p.location == Location::Query && !grouped.contains_key(name) {
                return Err(RequestInvalid::MissingParameter(name.clone()));
            }
        }
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let Some(schema) = &method.request else {
                return Err(RequestInvalid::BodyNotAllowed);
            };
            let value: Value = serde_json::from_slice(body)
                .map_err(|_| RequestInvalid::BodyNotJson("The body is not JSON."))?;
            if !value.is_object() {
                return Err(RequestInvalid::BodyNotJson(
                    "The body is not a JSON object.",
                ));
            }
            self.check_object(&lower_first(schema), schema, &value)?;
            Some(value)
        };
        Ok(ValidatedRequest {
            method,
            path_params,
            query: grouped,
            body,
        })
    }

    fn check_object(
        &self,
        at: &str,
        schema_name: &str,
        value: &Value,
    ) -> Result<(), RequestInvalid> {
        let Some(obj) = value.as_object() else {
            return Err(RequestInvalid::WrongType {
                at: at.to_owned(),
                expected: "object",
            });
        };
        let schema = self
            .schemas
            .get(schema_name)
            .ok_or_else(|| RequestInvalid::WrongType {
                at: at.to_owned(),
                expected: "a known schema",
            })?;
        let props = schema.get("properties").and_then(Value::as_object);
        for (name, v) in obj {
            let Some(spec) = props.and_then(|p| p.get(name)) else {
                return Err(RequestInvalid::UnknownField {
                    at: at.to_owned(),
                    name: name.clone(),
                });
            };
            self.check_value(&format!("{at}.{name}"), spec, v)?;
        }
        Ok(())
    }

    fn check_value(&self, at: &str, spec: &Value, value: &Value) -> Result<(), RequestInvalid> {
        // An explicit null is how JSON clients say "unset"; Google accepts it for any field.
        if value.is_null() {
            return Ok(());
        }
        if let Some(r) = spec.get("$ref").and_then(Value::as_str) {
            return self.check_object(at, r, value);
        }
        let wrong = |expected| RequestInvalid::WrongType {
            at: at.to_owned(),
            expected,
        };
        match spec.get("type").and_then(Value::as_str) {
            Some("string") => {
                let s = value.as_str().ok_or_else(|| wrong("string"))?;
                if let Some(allowed) = spec.get("enum").and_then(Value::as_array)
                    && !allowed.iter().any(|a| a.as_str() == Some(s))
                {
                    return Err(RequestInvalid::InvalidEnum { at: at.to_owned() });
                }
                Ok(())
            }
            Some("number") => value
                .is_number()
                .then_some(())
                .ok_or_else(|| wrong("number")),
            Some("integer") => {
                let integral = value.is_i64()
                    || value.is_u64()
                    || value.as_f64().is_some_and(|f| f.fract() == 0.0);
                integral.then_some(()).ok_or_else(|| wrong("integer"))
            }
            Some("boolean") => value
                .is_boolean()
                .then_some(())
                .ok_or_else(|| wrong("boolean")),
            Some("array") => {
                let items = value.as_array().ok_or_else(|| wrong("array"))?;
                let item_spec = spec.get("items").cloned().unwrap_or(Value::Null);
                for (i, item) in items.iter().enumerate() {
                    self.check_value(&format!("{at}[{i}]"), &item_spec, item)?;
                }
                Ok(())
            }
            Some("object") => {
                let obj = value.as_object().ok_or_else(|| wrong("object"))?;
                if let Some(inner) = spec.get("additionalProperties") {
                    for (k, v) in obj {
                        self.check_value(&format!("{at}.{k}"), inner, v)?;
                    }
                }
                Ok(())
            }
            // `any` and untyped: whatever JSON.
            _ => Ok(()),
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn check_query_value(name: &str, p: &Param, v: &str) -> Result<(), RequestInvalid> {
    let bad = |expected| RequestInvalid::InvalidQueryValue {
        name: name.to_owned(),
        expected,
        value: v.chars().take(64).collect(),
    };
    match p.kind {
        ParamKind::Integer => {
            let n: i64 = v.parse().map_err(|_| bad("TYPE_INT32"))?;
            if p.format.as_deref() == Some("int32") && i32::try_from(n).is_err() {
                return Err(bad("TYPE_INT32"));
            }
        }
        ParamKind::Number => {
            v.parse::<f64>().map_err(|_| bad("TYPE_DOUBLE"))?;
        }
        ParamKind::Boolean => {
            if v != "true" && v != "false" {
                return Err(bad("TYPE_BOOL"));
            }
        }
        ParamKind::String => {
            if !p.enum_values.is_empty() && !p.enum_values.iter().any(|e| e == v) {
                return Err(bad("an enum value"));
            }
        }
    }
    Ok(())
}

fn parse_param(name: &str, v: &Value) -> Result<Param, DiscoveryError> {
    let location = match v.get("location").and_then(Value::as_str) {
        Some("path") => Location::Path,
        Some("query") => Location::Query,
        _ => {
            return Err(DiscoveryError::Malformed(format!(
                "parameter {name} has no known location"
            )));
        }
    };
    let kind = match v.get("type").and_then(Value::as_str) {
        Some("integer") => ParamKind::Integer,
        Some("number") => ParamKind::Number,
        Some("boolean") => ParamKind::Boolean,
        _ => ParamKind::String,
    };
    Ok(Param {
        location,
        kind,
        repeated: v.get("repeated").and_then(Value::as_bool).unwrap_or(false),
        required: v.get("required").and_then(Value::as_bool).unwrap_or(false),
        enum_values: v
            .get("enum")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        format: v.get("format").and_then(Value::as_str).map(str::to_owned),
    })
}

fn collect_methods(
    resources: &Value,
    out: &mut Vec<DiscoveredMethod>,
) -> Result<(), DiscoveryError> {
    let Some(resources) = resources.as_object() else {
        return Ok(());
    };
    for resource in resources.values() {
        if let Some(methods) = resource.get("methods").and_then(Value::as_object) {
            for m in methods.values() {
                out.push(parse_method(m)?);
            }
        }
        if let Some(nested) = resource.get("resources") {
            collect_methods(nested, out)?;
        }
    }
    Ok(())
}

fn parse_method(m: &Value) -> Result<DiscoveredMethod, DiscoveryError> {
    let text = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DiscoveryError::Malformed(format!("a method has no {k}")))
    };
    let id = text("id")?;
    let path = text("path")?;
    let params = match m.get("parameters").and_then(Value::as_object) {
        Some(p) => p
            .iter()
            .map(|(k, v)| Ok((k.clone(), parse_param(k, v)?)))
            .collect::<Result<_, DiscoveryError>>()?,
        None => BTreeMap::new(),
    };
    let segments = path
        .split('/')
        .map(|s| parse_segment(s).ok_or_else(|| DiscoveryError::Malformed(format!("path of {id}"))))
        .collect::<Result<_, _>>()?;
    let schema_ref = |k: &str| {
        m.get(k)
            .and_then(|r| r.get("$ref"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(DiscoveredMethod {
        http_method: text("httpMethod")?,
        segments,
        params,
        request: schema_ref("request"),
        response: schema_ref("response"),
        scopes: m
            .get("scopes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        id,
        path,
    })
}

fn parse_segment(s: &str) -> Option<Segment> {
    let Some(open) = s.find('{') else {
        return Some(Segment::Literal(s.to_owned()));
    };
    let close = s.find('}')?;
    let name = s.get(open + 1..close)?;
    // `{+name}` (reserved expansion, may span slashes) is not used by this API.
    if name.is_empty() || name.starts_with('+') || close < open {
        return None;
    }
    Some(Segment::Variable {
        name: name.to_owned(),
        prefix: s[..open].to_owned(),
        suffix: s[close + 1..].to_owned(),
    })
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_embedded_document_has_the_methods_we_serve() {
        let d = Discovery::classroom_v1();
        assert_eq!(d.revision(), "20261028");
        for id in [
            "classroom.courses.list",
            "classroom.courses.students.list",
            "classroom.courses.courseWork.studentSubmissions.return",
            "classroom.courses.courseWork.addOnAttachments.studentSubmissions.patch",
            "classroom.registrations.create",
        ] {
            assert!(d.method(id).is_some(), "{id}");
        }
        assert!(
            d.scopes()
                .contains("https://www.googleapis.com/auth/classroom.addons.teacher")
        );
    }

    #[test]
    fn a_document_can_be_loaded_from_a_path_and_a_broken_one_is_refused() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("google/classroom.v1.json");
        let loaded = Discovery::load(&path).unwrap();
        assert_eq!(
            loaded.methods().count(),
            Discovery::classroom_v1().methods().count()
        );
        assert!(matches!(
            Discovery::load(&path.with_file_name("missing.json")),
            Err(DiscoveryError::Io(_))
        ));
        assert!(matches!(
            Discovery::from_json("{}"),
            Err(DiscoveryError::Malformed(_))
        ));
        assert!(matches!(
            Discovery::from_json("not json"),
            Err(DiscoveryError::Json(_))
        ));
    }

    #[test]
    fn custom_verbs_win_over_plain_ids() {
        let d = Discovery::classroom_v1();
        let (m, vars) = d
            .match_path(
                "POST",
                "/v1/courses/1/courseWork/2/studentSubmissions/3:return",
            )
            .unwrap();
        assert_eq!(
            m.id,
            "classroom.courses.courseWork.studentSubmissions.return"
        );
        assert_eq!(vars["id"], "3");
        let (m, vars) = d
            .match_path("PATCH", "/v1/courses/1/courseWork/2/studentSubmissions/3")
            .unwrap();
        assert_eq!(
            m.id,
            "classroom.courses.courseWork.studentSubmissions.patch"
        );
        assert_eq!(vars["courseWorkId"], "2");
        let (_, vars) = d.match_path("GET", "/v1/courses/a%2Fb/students").unwrap();
        assert_eq!(vars["courseId"], "a/b");
        assert!(d.match_path("DELETE", "/v1/courses/1/students").is_err());
        assert!(d.match_path("GET", "/v1/nothing").is_err());
        assert!(d.match_path("GET", "/v1/courses//students").is_err());
    }

    #[test]
    fn query_parameters_are_checked_against_the_method() {
        let d = Discovery::classroom_v1();
        let ok = d
            .validate(
                "GET",
                "/v1/courses",
                &q(&[
                    ("teacherId", "me"),
                    ("courseStates", "ACTIVE"),
                    ("courseStates", "ARCHIVED"),
                    ("pageSize", "2"),
                    ("prettyPrint", "false"),
                ]),
                b"",
            )
            .unwrap();
        assert_eq!(ok.query_all("courseStates").len(), 2);
        let refuse = |pairs: &[(&str, &str)]| {
            d.validate("GET", "/v1/courses", &q(pairs), b"")
                .unwrap_err()
        };
        assert_eq!(
            refuse(&[("teacher", "me")]),
            RequestInvalid::UnknownQueryParameter("teacher".into())
        );
        assert!(matches!(
            refuse(&[("pageSize", "two")]),
            RequestInvalid::InvalidQueryValue { .. }
        ));
        assert!(matches!(
            refuse(&[("pageSize", "99999999999")]),
            RequestInvalid::InvalidQueryValue { .. }
        ));
        assert!(matches!(
            refuse(&[("courseStates", "OPEN")]),
            RequestInvalid::InvalidQueryValue { .. }
        ));
        assert_eq!(
            refuse(&[("teacherId", "a"), ("teacherId", "b")]),
            RequestInvalid::RepeatedQueryParameter("teacherId".into())
        );
        // A path parameter is not a query parameter.
        assert!(matches!(
            d.validate(
                "GET",
                "/v1/courses/1/students",
                &q(&[("courseId", "1")]),
                b""
            )
            .unwrap_err(),
            RequestInvalid::UnknownQueryParameter(_)
        ));
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        let d = Discovery::classroom_v1();
        let path = "/v1/courses/1/courseWork";
        let ok = br#"{"title":"T","workType":"ASSIGNMENT","state":"PUBLISHED","maxPoints":10,
                     "dueDate":{"year":2026,"month":5,"day":1},"materials":[{"link":{"url":"https://x"}}]}"#;
        assert!(d.validate("POST", path, &[], ok).is_ok());
        let refuse = |body: &str| d.validate("POST", path, &[], body.as_bytes()).unwrap_err();
        assert_eq!(
            refuse(r#"{"title":"T","points":3}"#),
            RequestInvalid::UnknownField {
                at: "courseWork".into(),
                name: "points".into()
            }
        );
        assert!(matches!(
            refuse(r#"{"dueDate":{"year":2026,"week":3}}"#),
            RequestInvalid::UnknownField { .. }
        ));
        assert!(matches!(
            refuse(r#"{"maxPoints":"ten"}"#),
            RequestInvalid::WrongType { .. }
        ));
        assert!(matches!(
            refuse(r#"{"state":"OPEN"}"#),
            RequestInvalid::InvalidEnum { .. }
        ));
        assert!(matches!(refuse("[1]"), RequestInvalid::BodyNotJson(_)));
        assert!(matches!(refuse("{"), RequestInvalid::BodyNotJson(_)));
        assert_eq!(
            d.validate("GET", "/v1/courses", &[], b"{}").unwrap_err(),
            RequestInvalid::BodyNotAllowed
        );
        // Maps (`additionalProperties`) check their values' schema.
        let patch = "/v1/courses/1/courseWork/2/studentSubmissions/3";
        assert!(
            d.validate(
                "PATCH",
                patch,
                &[],
                br#"{"draftRubricGrades":{"c1":{"points":2}}}"#
            )
            .is_ok()
        );
        assert!(
            d.validate(
                "PATCH",
                patch,
                &[],
                br#"{"draftRubricGrades":{"c1":{"score":2}}}"#
            )
            .is_err()
        );
    }
}
