//! Tests of `cond.rs`: each CondPattern form, each flag, and the load errors.

use super::*;
use crate::rewrite::expand::Refs;
use crate::rewrite::test_req::TestReq;

/// Parses `cond`, expands its test string for `req` and applies `!`.
fn matches(cond: &str, req: &TestReq) -> bool {
    let c = Cond::parse(cond).unwrap_or_else(|e| panic!("{cond:?}: {e:?}"));
    let cx =
        Cx { req, filename: None, query: &req.query, env: &[], rule_refs: Refs::default(), cond_refs: Refs::default() };
    c.test_string.with_expanded(&cx, |input| c.holds(input, &cx)) != c.negate
}

#[test]
fn condition_patterns_match_like_apache() {
    let ws = TestReq::get("/chat", "id=42").upgrade();
    let plain = TestReq::get("/chat", "");
    for (cond, req, want) in [
        // The WebSocket rule set's conditions: unanchored regexes, NC.
        ("%{HTTP:Upgrade} websocket [NC]", &ws, true),
        ("%{HTTP:Connection} upgrade [NC]", &ws, true), // Firefox: "keep-alive, Upgrade"
        ("%{HTTP:Connection} upgrade", &ws, false),     // case matters without NC
        ("%{HTTP:Upgrade} websocket [NC]", &plain, false), // absent header is ""
        ("%{HTTP:Upgrade} !websocket [NC]", &plain, true),
        ("%{HTTP:Upgrade} ^$", &plain, true),
        ("%{HTTP:Upgrade} [nocase]", &plain, false), // two arguments: a character class
        // String comparisons.
        ("%{REQUEST_METHOD} =GET", &ws, true),
        ("%{REQUEST_METHOD} =get", &ws, false),
        ("%{REQUEST_METHOD} =get [NC]", &ws, true),
        ("%{HTTP:X-None} =\"\"", &ws, true),
        ("%{HTTP:Host} =\"\"", &ws, false),
        ("%{REQUEST_METHOD} !=POST", &ws, true),
        ("%{QUERY_STRING} <id=5", &ws, false), // "id=42" is longer, so greater
        ("%{QUERY_STRING} >id=41", &ws, true),
        ("%{QUERY_STRING} >=id=42", &ws, true),
        ("%{QUERY_STRING} <=id=42", &ws, true),
        ("%{QUERY_STRING} <zz", &ws, false), // longer is greater, whatever the bytes
        ("%{QUERY_STRING} >zzzzzz", &ws, false),
        ("%{QUERY_STRING} <ZZ [NC]", &ws, true), // NC: plain case-folded comparison
        ("%{HTTP:Upgrade} =", &ws, false),       // one character: the regex "="
        // Integers, as atoi.
        ("%{SERVER_PORT} -eq443", &ws, true),
        ("%{SERVER_PORT} -ne443", &ws, false),
        ("%{SERVER_PORT} !-ne443", &ws, true),
        ("%{SERVER_PORT} -gt80", &ws, true),
        ("%{SERVER_PORT} -ge443", &ws, true),
        ("%{SERVER_PORT} -lt1000", &ws, true),
        ("%{SERVER_PORT} -le442", &ws, false),
        ("%{HTTP:X-None} -eq0", &ws, true),
        ("%{HTTP:Upgrade} -eq0 [NC]", &ws, true), // NC ignored, "websocket" reads as 0
        // expr with wildcards (Apache ap_expr operators).
        ("expr \"%{HTTP_HOST} -strmatch '*.example.com'\"", &ws, true),
        ("expr \"%{HTTP_HOST} -strmatch '*.EXAMPLE.com'\"", &ws, false),
        ("expr \"%{HTTP_HOST} -strcmatch '*.EXAMPLE.com'\"", &ws, true),
        ("expr \"%{REQUEST_URI} -fnmatch '/*'\"", &ws, true),
        ("expr \"%{REQUEST_URI} -fnmatch '/*/x'\"", &ws, false),
        ("expr \"'%{REQUEST_METHOD}:%{HTTPS}' == 'GET:on'\"", &ws, true),
        ("expr \"%{REQUEST_METHOD} != 'GET'\"", &ws, false),
        ("expr \"!%{REQUEST_METHOD} != 'GET'\"", &ws, true),
        // Unicode-aware classes, categories and case folding on a decoded path.
        ("%{REQUEST_URI} ^/\\w+$", &TestReq::get("/größe", ""), true),
        ("%{REQUEST_URI} ^/\\p{L}+$", &TestReq::get("/größe", ""), true),
        ("%{REQUEST_URI} ^/\\p{Lu}", &TestReq::get("/größe", ""), false),
        ("%{REQUEST_URI} ^/GRÖSSE$ [NC]", &TestReq::get("/größe", ""), false), // ß folds to itself
        ("%{REQUEST_URI} ^/ÄB$ [NC]", &TestReq::get("/äb", ""), true),
        ("%{REQUEST_URI} ^/.$", &TestReq::get("/ä", ""), true), // one character, not one byte
        // A test string built from several pieces.
        ("%{REQUEST_METHOD}:%{REQUEST_URI} ^GET:/chat$", &ws, true),
    ] {
        assert_eq!(matches(cond, req), want, "cond {cond:?}");
    }
}

#[test]
fn flags_are_read() {
    for (cond, nocase, or_next) in [
        ("a b", false, false),
        ("a b [NC]", true, false),
        ("a b [nocase,ornext]", true, true),
        ("a b [OR,NV]", false, true),
        ("a b \"[ nc , or ]\"", true, true),
        ("a -eq1 [NC]", false, false), // ignored off regexes and strings
    ] {
        let c = Cond::parse(cond).unwrap_or_else(|e| panic!("{cond:?}: {e:?}"));
        assert_eq!((c.nocase, c.or_next), (nocase, or_next), "cond {cond:?}");
    }
}

#[test]
fn load_errors_name_the_column() {
    for (cond, column, needle) in [
        ("%{HTTP:Upgrade}", 16, "expected TestString CondPattern [flags]"),
        ("%{HTTP:Upgrade} websocket [NC,XX]", 31, "unknown condition flag \"XX\""),
        ("%{HTTP:Upgrade} websocket [NC=1]", 28, "flag NC takes no value"),
        ("%{HTTP:Upgrade} (web", 17, "invalid regular expression \"(web\": unclosed group"),
        ("%{HTTP:Upgrade} !(web", 18, "unclosed group"),
        ("%{HTTP_HOST} ^(a)\\1$", 14, "backreferences are not supported at character 5 of the pattern"),
        ("%{HTTP_HOST} (?=a)", 14, "look-around"),
        ("%{HTTP_HOST} ^\\p{Greek}+$", 14, "Unicode property not found at character 2 of the pattern (sidecar knows"),
        ("%{HTTP_HOST} \\p{Alphabetic}", 14, "not scripts or other properties"),
        ("%{NOPE} x", 1, "unknown variable"),
        ("%{REQUEST_FILENAME} -f", 21, "tests a file"),
        ("%{REQUEST_FILENAME} !-d", 22, "tests a file"),
        ("%{HTTP_HOST} -strmatch", 14, "write RewriteCond expr"),
        ("expr \"%{HTTP_HOST} =~ /x/\"", 20, "unsupported expr operator"),
        ("expr \"%{HTTP_HOST} -strmatch\"", 7, "expected an expression"),
        ("expr \"%{HTTP_HOST} -strmatch bare\"", 30, "expected a quoted string"),
    ] {
        let errors = Cond::parse(cond).expect_err(cond);
        let e = &errors[0];
        assert_eq!(e.column, column, "cond {cond:?}: {errors:?}");
        assert!(e.message.contains(needle), "cond {cond:?}: {errors:?}");
    }
}

#[test]
fn all_errors_of_a_condition_are_reported() {
    let errors = Cond::parse("%{NOPE} (x [ZZ]").expect_err("bad");
    let columns: Vec<usize> = errors.iter().map(|e| e.column).collect();
    assert_eq!(columns, vec![1, 9, 13], "{errors:?}");
}
