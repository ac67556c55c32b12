use super::*;

const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn normalises_to_openkruise_key_and_tag() {
    // (input, node image key, node image tag, pullable reference)
    let d = D;
    let cases: Vec<(String, &str, String, String)> = vec![
        (
            "nginx".into(),
            "nginx",
            "latest".into(),
            "docker.io/library/nginx:latest".into(),
        ),
        (
            "nginx:1.25".into(),
            "nginx",
            "1.25".into(),
            "docker.io/library/nginx:1.25".into(),
        ),
        (
            "library/nginx:1".into(),
            "nginx",
            "1".into(),
            "docker.io/library/nginx:1".into(),
        ),
        (
            "docker.io/library/nginx:1".into(),
            "nginx",
            "1".into(),
            "docker.io/library/nginx:1".into(),
        ),
        (
            "index.docker.io/library/nginx:1".into(),
            "nginx",
            "1".into(),
            "docker.io/library/nginx:1".into(),
        ),
        (
            "team/app:v2".into(),
            "team/app",
            "v2".into(),
            "docker.io/team/app:v2".into(),
        ),
        (
            "docker.io/library/a/b:v".into(),
            "library/a/b",
            "v".into(),
            "docker.io/library/a/b:v".into(),
        ),
        (
            "registry.example.com/team/app:v1".into(),
            "registry.example.com/team/app",
            "v1".into(),
            "registry.example.com/team/app:v1".into(),
        ),
        (
            "127.0.0.1:5000/lab/small:v1".into(),
            "127.0.0.1:5000/lab/small",
            "v1".into(),
            "127.0.0.1:5000/lab/small:v1".into(),
        ),
        (
            "localhost:5000/x".into(),
            "localhost:5000/x",
            "latest".into(),
            "localhost:5000/x:latest".into(),
        ),
        (
            "localhost/x:t".into(),
            "localhost/x",
            "t".into(),
            "localhost/x:t".into(),
        ),
        (
            format!("nginx@{d}"),
            "nginx",
            d.into(),
            format!("docker.io/library/nginx@{d}"),
        ),
        (
            format!("nginx:1.25@{d}"),
            "nginx",
            format!("1.25@{d}"),
            format!("docker.io/library/nginx:1.25@{d}"),
        ),
        (
            format!("r.io:443/a/b@{d}"),
            "r.io:443/a/b",
            d.into(),
            format!("r.io:443/a/b@{d}"),
        ),
    ];
    for (input, key, tag, full) in cases {
        let r = ImageRef::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.node_image_key(), key, "key of {input}");
        assert_eq!(r.node_image_tag(), tag, "tag of {input}");
        assert_eq!(r.to_string(), full, "pullable form of {input}");
        // The round trip through a NodeImage entry gives back the same image.
        let back = ImageRef::from_node_image(&r.node_image_key(), &r.node_image_tag()).unwrap();
        assert_eq!(back, r, "round trip of {input}");
        assert_eq!(back.is_digest(), input.contains('@'));
    }
}

#[test]
fn refuses_bad_references_with_a_reason() {
    let short = "nginx@sha256:0123456789abcdef";
    let upper_hex = format!("nginx@{}", D.to_uppercase().replace("SHA256", "sha256"));
    let cases: Vec<(String, ImageRefError)> = vec![
        ("".into(), ImageRefError::Empty),
        ("Nginx:1".into(), ImageRefError::Uppercase("Nginx:1".into())),
        (
            "team/App:1".into(),
            ImageRefError::Uppercase("team/App:1".into()),
        ),
        (
            "nginx:1:2".into(),
            ImageRefError::Format("nginx:1:2".into()),
        ),
        ("nginx:1 ".into(), ImageRefError::Format("nginx:1 ".into())),
        ("ngi nx".into(), ImageRefError::Format("ngi nx".into())),
        (
            "Bad Ref!!".into(),
            ImageRefError::Format("Bad Ref!!".into()),
        ),
        (short.into(), ImageRefError::Digest(short.into())),
        (upper_hex.clone(), ImageRefError::Digest(upper_hex)),
        (
            "nginx@md5:0123456789abcdef0123456789abcdef".into(),
            ImageRefError::Digest("nginx@md5:0123456789abcdef0123456789abcdef".into()),
        ),
        (
            format!("a/{}", "b".repeat(300)),
            ImageRefError::TooLong(format!("a/{}", "b".repeat(300))),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(ImageRef::parse(&input), Err(want), "{input:?}");
    }
}

#[test]
fn cel_pattern_agrees_with_the_parser() {
    let re = regex::Regex::new(IMAGE_REFERENCE_PATTERN).unwrap();
    let samples = [
        "nginx",
        "nginx:1.25",
        "team/app:v2",
        "127.0.0.1:5000/lab/small:v1",
        "localhost/x",
        "a.b-c.d:80/x_y/z__w/v-v:Tag_1.0-rc",
        "Host.Example.com/x",
        "a/b/c/d/e/f",
        "",
        "Nginx",
        "x:",
        "x:1:2",
        "x y",
        "x@sha256:abc",
        "-x",
        "x-",
        "x..y",
        "x/Y",
        "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "x:v@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "x@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "x:.bad",
        "x:-bad",
        "x:_ok",
    ];
    for s in samples {
        assert_eq!(re.is_match(s), ImageRef::parse(s).is_ok(), "{s:?}");
    }
}

#[test]
fn digest_tags_are_told_apart_from_tag_names() {
    assert!(is_digest_tag(D));
    assert!(!is_digest_tag("latest"));
    assert!(!is_digest_tag(&format!("v1@{D}")));
    assert_eq!(pull_reference("nginx", D), format!("nginx@{D}"));
    assert_eq!(
        pull_reference("nginx", &format!("v1@{D}")),
        format!("nginx:v1@{D}")
    );
    assert_eq!(pull_reference("r:5000/a", "v1"), "r:5000/a:v1");
}
