//! Request bodies: every JSON body a REST route reads is parsed here, into a serde struct per
//! route whose fields are [`Field`]s, and its problems become the field errors 100ms returns.
//!
//! A wrong type must read `"enabled: must be true or false"`, not serde's `invalid type: string
//! "yes", expected a boolean at line 1 column 15`, and a route lists every bad field at once. So
//! a [`Field`] never fails to deserialize: it keeps what was sent, and the route's check turns a
//! [`Field::Wrong`] into its own message, gathered in [`Problems`].
//!
//! ```ignore
//! #[derive(Debug, Default, Deserialize)]
//! #[serde(default)]
//! struct EndRoom { reason: Field<String>, lock: Field<bool> }
//!
//! let body: EndRoom = parse_request(&bytes)?; // 400 unless a JSON object
//! let mut problems = Problems::default();
//! let lock = problems.optional(body.lock, "lock", "must be true or false").unwrap_or(false);
//! problems.finish()?; // 400 "validation failed", one detail per bad field
//! ```

use axum::body::Bytes;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use store::template::FieldError;

use super::{MAX_BODY, RestError};

/// One field of a request body as the client sent it.
#[derive(Debug, Clone, Default)]
pub enum Field<T> {
    /// Not in the body (a struct of fields is `#[serde(default)]`).
    #[default]
    Missing,
    /// `null`: most routes take it as missing, some (`description`) refuse it, one (a room's
    /// `webhook`) reads it as "remove".
    Null,
    /// A value of the expected type.
    Given(T),
    /// A value of another type, kept so the route can name the field in its error.
    Wrong(Value),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field<T>, D::Error> {
        let v = Value::deserialize(d)?;
        if v.is_null() {
            return Ok(Field::Null);
        }
        Ok(match T::deserialize(&v) {
            Ok(t) => Field::Given(t),
            Err(_) => Field::Wrong(v),
        })
    }
}

impl<T> Field<T> {
    /// The value if one of the expected type was sent (a wrong one counts as none).
    pub fn given(self) -> Option<T> {
        match self {
            Field::Given(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the key is in the body at all (even as `null`).
    pub fn is_present(&self) -> bool {
        !matches!(self, Field::Missing)
    }

    /// `None` if missing or null, the value if of the expected type, else `message` as the
    /// field's error (for routes that stop at the first bad field).
    pub fn optional(self, name: &str, message: &str) -> Result<Option<T>, FieldError> {
        match self {
            Field::Missing | Field::Null => Ok(None),
            Field::Given(t) => Ok(Some(t)),
            Field::Wrong(_) => Err(FieldError::new(name, message)),
        }
    }
}

/// The field errors of one body, reported together as one 400.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// [`Field::optional`], noting the error instead of returning it.
    pub fn optional<T>(&mut self, field: Field<T>, name: &str, message: &str) -> Option<T> {
        field.optional(name, message).unwrap_or_else(|e| {
            self.0.push(e);
            None
        })
    }

    /// `None` if missing or null; the value if of the expected type and `ok`; else `message`.
    pub fn optional_if<T>(
        &mut self,
        field: Field<T>,
        name: &str,
        ok: impl FnOnce(&T) -> bool,
        message: impl Into<String>,
    ) -> Option<T> {
        match field {
            Field::Missing | Field::Null => None,
            Field::Given(t) if ok(&t) => Some(t),
            _ => {
                self.add(name, message);
                None
            }
        }
    }

    /// 400 "validation failed" listing every problem, if there is one.
    pub fn finish(self) -> Result<(), RestError> {
        if self.0.is_empty() { Ok(()) } else { Err(self.into_error()) }
    }

    /// 400 "validation failed" listing every problem.
    pub fn into_error(self) -> RestError {
        RestError::invalid(self.0)
    }
}

impl From<FieldError> for RestError {
    fn from(e: FieldError) -> RestError {
        RestError::invalid(vec![e])
    }
}

/// Parses a JSON body into `T`, with 400 and the parser's complaint for anything else.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, RestError> {
    if body.len() > MAX_BODY {
        return Err(RestError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body longer than {MAX_BODY} bytes")));
    }
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| RestError::bad_request("invalid JSON body").with_detail(e.to_string()))
}

/// Parses a JSON object body into the request struct `T` (an empty body is `{}`).
pub fn parse_request<T: DeserializeOwned>(body: &Bytes) -> Result<T, RestError> {
    let value = match parse_body::<Value>(body)? {
        v @ Value::Object(_) => v,
        _ => return Err(RestError::bad_request("the body must be a JSON object")),
    };
    // A struct of `Field`s takes any object; this is for a struct with a plain field.
    T::deserialize(value).map_err(|e| RestError::bad_request("invalid JSON body").with_detail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Body {
        text: Field<String>,
        flag: Field<bool>,
        #[serde(flatten)]
        other: serde_json::Map<String, Value>,
    }

    fn body(json: &str) -> Result<Body, RestError> {
        parse_request(&Bytes::from(json.to_owned()))
    }

    #[test]
    fn fields_keep_what_was_sent() {
        let b = body(r#"{"text": "hi", "flag": "yes", "extra": 1}"#).unwrap();
        assert!(matches!(b.text, Field::Given(ref s) if s == "hi"));
        assert!(matches!(b.flag, Field::Wrong(Value::String(_))));
        assert_eq!(b.other.keys().collect::<Vec<_>>(), ["extra"]);
        let b = body(r#"{"text": null}"#).unwrap();
        assert!(matches!(b.text, Field::Null) && b.text.is_present());
        assert!(matches!(b.flag, Field::Missing) && !b.flag.is_present());
        assert!(body("  ").is_ok(), "an empty body is an empty object");
    }

    #[test]
    fn bad_bodies_get_the_usual_errors() {
        let e = body("[1]").unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (StatusCode::BAD_REQUEST, "the body must be a JSON object"));
        let e = body("{").unwrap_err();
        assert_eq!((e.message.as_str(), e.details.len()), ("invalid JSON body", 1));
    }

    #[test]
    fn problems_name_each_field_in_order() {
        let b = body(r#"{"text": 5, "flag": "no"}"#).unwrap();
        let mut p = Problems::default();
        assert_eq!(p.optional_if(b.text, "text", |s: &String| s.len() < 3, "short string"), None);
        assert_eq!(p.optional(b.flag, "flag", "must be true or false"), None);
        assert_eq!(p.finish().unwrap_err().details, ["text: short string", "flag: must be true or false"]);
    }
}
