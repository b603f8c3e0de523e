//! The OpenAPI 3 document of the REST API, built from [`super::ROUTES`] (the same table the
//! router is built from), served at `GET /v2/openapi.json`.

use axum::Json;
use serde_json::{Map, Value, json};

use super::ROUTES;

/// The document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = json!({
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
        });
        if r.method == "DELETE" {
            responses["204"] = json!({"description": "Deleted"});
        }
        let mut op = json!({
            "tags": [r.tag],
            "summary": r.summary,
            "operationId": format!("{} {}", r.method.to_lowercase(), r.path),
            "parameters": params,
            "responses": responses,
        });
        if r.auth {
            op["security"] = json!([{"managementToken": []}]);
            op["responses"]["401"] = json!({"$ref": "#/components/responses/Error"});
        } else {
            op["security"] = json!([]);
        }
        if r.method == "POST" {
            op["requestBody"] =
                json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Platform REST API (100ms server API v2 shape)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "See docs/rest-api.md. Paths, fields, pagination and errors follow 100ms's server API v2."
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "managementToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256, type \"management\")"}
            },
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "integer"},
                            "message": {"type": "string"},
                            "details": {"type": "array", "items": {"type": "string"}}
                        }
                    }}}
                }
            }
        }
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}
