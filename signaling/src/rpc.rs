//! JSON-RPC 2.0 as the 100ms SDK speaks it on the WebSocket (and on the `ion-sfu` data
//! channel): requests carry a string `id`, notifies carry none, server pushes carry none, and
//! every success `result` must be truthy (`{}` when there is nothing to say).
//!
//! ```
//! use signaling::rpc::{parse_incoming, Incoming, push, response};
//! let req = parse_incoming(r#"{"method":"ping","params":{"timestamp":1},"id":"a1","jsonrpc":"2.0"}"#).unwrap();
//! assert!(matches!(req, Incoming::Request { ref method, .. } if method == "ping"));
//! assert_eq!(response(&"a1".into(), serde_json::json!({})), r#"{"id":"a1","jsonrpc":"2.0","result":{}}"#);
//! assert_eq!(push("on-peer-leave", serde_json::json!({"peer_id":"p"})), r#"{"method":"on-peer-leave","params":{"peer_id":"p"}}"#);
//! ```

use serde_json::{Value, json};

/// Standard JSON-RPC codes, and the HTTP-like codes the SDK interprets (4xx: fail at once;
/// 5xx and 429: retried, so never used for permanent errors).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const BAD_REQUEST: i64 = 400;
    pub const UNAUTHORIZED: i64 = 401;
    pub const FORBIDDEN: i64 = 403;
    pub const NOT_FOUND: i64 = 404;
    pub const CONFLICT: i64 = 409;
    pub const TOO_LARGE: i64 = 413;
    /// Not implemented by this server: a 4xx so that the SDK does not retry it.
    pub const NOT_IMPLEMENTED: i64 = 422;
    pub const INTERNAL: i64 = 500;
}

/// One message from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Expects a response with the same `id`.
    Request { id: Value, method: String, params: Value },
    /// No response.
    Notify { method: String, params: Value },
    /// A response to something we sent (only on the data channel); ignored.
    Response { id: Value },
}

/// Why a client message was not understood. Each maps to a JSON-RPC error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    #[error("malformed JSON: {0}")]
    Parse(String),
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(&'static str),
}

impl RpcError {
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse(_) => code::PARSE_ERROR,
            RpcError::Invalid(_) => code::INVALID_REQUEST,
        }
    }
}

/// Parses one text frame.
pub fn parse_incoming(text: &str) -> Result<Incoming, RpcError> {
    let v: Value = serde_json::from_str(text).map_err(|e| RpcError::Parse(e.to_string()))?;
    let Value::Object(mut obj) = v else {
        return Err(RpcError::Invalid("a message must be a JSON object (batches are not supported)"));
    };
    let id = obj.remove("id").filter(|id| !id.is_null());
    let params = obj.remove("params").unwrap_or_else(|| json!({}));
    match (obj.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => {
            if !(id.is_string() || id.is_number()) {
                return Err(RpcError::Invalid("id must be a string or a number"));
            }
            Ok(Incoming::Request { id, method, params })
        }
        (Some(Value::String(method)), None) => Ok(Incoming::Notify { method, params }),
        (Some(_), _) => Err(RpcError::Invalid("method must be a string")),
        (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => Ok(Incoming::Response { id }),
        (None, _) => Err(RpcError::Invalid("a message needs a method (or an id with a result)")),
    }
}

/// A success response. `result` must be truthy for the SDK; callers pass `{}` for "nothing".
pub fn response(id: &Value, result: Value) -> String {
    debug_assert!(!matches!(result, Value::Null | Value::Bool(false)), "the SDK treats a falsy result as an error");
    json!({ "id": id, "jsonrpc": "2.0", "result": result }).to_string()
}

/// An error response.
pub fn error_response(id: &Value, code: i64, message: &str) -> String {
    json!({ "id": id, "jsonrpc": "2.0", "error": { "code": code, "message": message } }).to_string()
}

/// A server push (no `id`: a push with one would be taken for a response and lost).
pub fn push(method: &str, params: Value) -> String {
    json!({ "method": method, "params": params }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifies_and_responses_are_told_apart() {
        assert!(matches!(parse_incoming(r#"{"method":"leave","params":{}}"#), Ok(Incoming::Notify { .. })));
        assert!(matches!(parse_incoming(r#"{"method":"x","id":7}"#), Ok(Incoming::Request { .. })));
        assert!(matches!(parse_incoming(r#"{"id":"a","result":{}}"#), Ok(Incoming::Response { .. })));
        // A null id is a notify, as JSON-RPC 1.0 clients send it.
        assert!(matches!(parse_incoming(r#"{"method":"x","id":null}"#), Ok(Incoming::Notify { .. })));
    }

    #[test]
    fn malformed_messages_get_typed_errors() {
        assert_eq!(parse_incoming("{").unwrap_err().code(), code::PARSE_ERROR);
        assert_eq!(parse_incoming("[]").unwrap_err().code(), code::INVALID_REQUEST);
        assert_eq!(parse_incoming(r#"{"method":5}"#).unwrap_err().code(), code::INVALID_REQUEST);
        assert_eq!(parse_incoming(r#"{"params":{}}"#).unwrap_err().code(), code::INVALID_REQUEST);
        assert_eq!(parse_incoming(r#"{"method":"x","id":{}}"#).unwrap_err().code(), code::INVALID_REQUEST);
        assert!(parse_incoming("\"just a string\"").is_err());
    }

    #[test]
    fn error_responses_carry_code_and_message() {
        let e: Value = serde_json::from_str(&error_response(&json!("q"), 403, "nope")).unwrap();
        assert_eq!(e["error"]["code"], 403);
        assert_eq!(e["error"]["message"], "nope");
        assert_eq!(e["id"], "q");
    }
}
