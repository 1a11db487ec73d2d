//! The GraphiQL playground page. With a token (demo mode) the headers editor starts with
//! `{"Authorization": "Bearer …"}`; without one, the default query explains where a token goes,
//! so the page never sends a placeholder that the server would refuse. Every request the page
//! sends carries `x-leadgate-csrf: 1`, so GETs and multipart uploads pass the CSRF check.

/// Serialises `value` for inclusion in a `<script>` block.
fn js(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const DEFAULT_QUERY: &str = "# Welcome to leadgate.
#
# Requests need a bearer token. Put it in the Headers tab below as
#   {\"Authorization\": \"Bearer <token>\"}
# Mint one with:  leadgate token --workspace <slug> --role admin
# The schema (docs, completion) needs the token too: once it is set,
# re-fetch the schema (Shift-Ctrl-R).
#
{
  viewer { subject role workspace { slug name } }
  leads(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) {
    totalCount
    edges { cursor node { id fullName email companyName status score } }
    pageInfo { hasNextPage endCursor }
  }
}
";

/// The HTML page for `endpoint`, with the headers editor preset when `token` is given.
pub fn page(endpoint: &str, token: Option<&str>) -> String {
    let headers = match token {
        Some(t) => serde_json::json!({ "Authorization": format!("Bearer {t}") }).to_string(),
        None => String::new(),
    };
    let props = serde_json::json!({
        "defaultQuery": DEFAULT_QUERY,
        "defaultHeaders": headers,
        "headerEditorEnabled": true,
        "shouldPersistHeaders": true,
        "defaultEditorToolsVisibility": "headers",
    });
    let endpoint = js(&serde_json::Value::String(endpoint.to_owned()));
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>leadgate GraphiQL</title>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3.7.1/graphiql.min.css">
  <style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script crossorigin src="https://unpkg.com/react@18.3.1/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@3.7.1/graphiql.min.js"></script>
  <script>
    // Requests go to {endpoint}; the Authorization header is taken from the Headers tab.
    const fetcher = GraphiQL.createFetcher({{ url: {endpoint}, headers: {{ 'x-leadgate-csrf': '1' }} }});
    const props = Object.assign({{ fetcher }}, {props});
    ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props));
  </script>
</body>
</html>
"#,
        props = js(&props),
    )
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn demo_token_is_preset_in_the_headers_editor() {
        let html = page("/graphql", Some("abc.def.ghi"));
        assert!(
            html.contains(r#"\"Authorization\":\"Bearer abc.def.ghi\""#),
            "{html}"
        );
    }

    #[test]
    fn without_a_token_no_header_is_sent_and_the_query_explains() {
        let html = page("/graphql", None);
        assert!(html.contains(r#""defaultHeaders":"""#));
        assert!(html.contains("leadgate token --workspace"));
    }

    #[test]
    fn every_request_carries_the_csrf_header() {
        let html = page("/graphql", None);
        assert!(html.contains("headers: { 'x-leadgate-csrf': '1' }"), "{html}");
    }

    #[test]
    fn script_breaking_characters_are_escaped() {
        let html = page("/graphql</script>", None);
        assert!(!html.contains("/graphql</script>"));
    }
}
