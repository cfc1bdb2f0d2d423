//! Unit tests of the configuration: syntax and semantic errors with their lines, and the rules
//! each setting follows.

use super::*;

#[test]
fn syntax_error_names_file_and_line() {
    let text = "[daemon]\nshards = 2\n[[target]]\niqn = \n";
    let err = Config::parse(text, "f.toml").expect_err("bad toml");
    assert!(err.0.starts_with("f.toml:4:"), "{}", err.0);
}

#[test]
fn semantic_error_names_line_and_problem() {
    let text = "[[target]]\niqn = \"iqn.2026-11.io.ferrite:t\"\n[[target.lun]]\nid = 0\nbackend = \"tape\"\n";
    let err = Config::parse(text, "f.toml").expect_err("bad backend");
    assert!(err.0.starts_with("f.toml:5:"), "{}", err.0);
    assert!(err.0.contains("tape"), "{}", err.0);
}

#[test]
fn errors_name_the_line_of_the_value_they_are_about() {
    // Two targets with the same LUN text: the error is on the second one's line, not on
    // the first line holding the same text.
    let lun = |block_size: u32| {
        format!("[[target.lun]]\nid = 0\nbackend = \"memory\"\nsize = \"64M\"\nblock_size = {block_size}\n")
    };
    let text = format!(
        "[[target]]\niqn = \"iqn.2026-11.io.ferrite:a\"\n{}[[target]]\niqn = \"iqn.2026-11.io.ferrite:b\"\n{}",
        lun(512),
        lun(1024)
    );
    let err = Config::parse(&text, "f.toml").expect_err("block_size 1024");
    assert_eq!(err.0, "f.toml:14: LUN 0: block_size 1024 must be 512 or 4096");
    // A value written twice (the same device size in two pools) names the pool at fault.
    let pool = |name: &str, cache: &str| {
        format!(
            "[[pool]]\nname = \"{name}\"\ndevices = [{{ path = \"{name}.img\", size = \"1G\" }}]\ncache_size = \"{cache}\"\n"
        )
    };
    let text = format!("{}{}", pool("a", "lots"), pool("b", "lots"));
    let err = Config::parse(&text, "f.toml").expect_err("bad cache size");
    assert!(err.0.starts_with("f.toml:4: pool a cache_size"), "{}", err.0);
    let text = format!("{}{}", pool("a", "64M"), pool("b", "lots"));
    let err = Config::parse(&text, "f.toml").expect_err("bad cache size");
    assert!(err.0.starts_with("f.toml:8: pool b cache_size"), "{}", err.0);
    // A LUN id repeated in one target: the second LUN's id line.
    let text = format!("[[target]]\niqn = \"iqn.2026-11.io.ferrite:a\"\n{}{}", lun(512), lun(512));
    let err = Config::parse(&text, "f.toml").expect_err("LUN 0 twice");
    assert!(err.0.starts_with("f.toml:9: LUN 0 defined twice"), "{}", err.0);
}

#[test]
fn volblock_size_is_checked_and_applies_to_volumes_only() {
    let lun = |backend: &str, extra: &str, v: &str| {
        format!(
            "[[pool]]\nname = \"p\"\ndevices = [{{ path = \"p.img\", size = \"1G\" }}]\n\
             [[target]]\niqn = \"iqn.2026-11.io.ferrite:t\"\n[[target.lun]]\nid = 0\n\
             backend = \"{backend}\"\n{extra}\nsize = \"64M\"\nvolblock_size = \"{v}\"\n"
        )
    };
    let config = Config::parse(&lun("volume", "volume = \"p/v\"", "64K"), "f.toml").expect("valid");
    assert_eq!(lun_volblock_bytes(&config.targets[0].luns[0]), Ok(65536));
    let err = Config::parse(&lun("volume", "volume = \"p/v\"", "3K"), "f.toml")
        .expect_err("not a power of two");
    assert!(err.0.contains("volblock_size 3K must be a power of two"), "{}", err.0);
    let err =
        Config::parse(&lun("volume", "volume = \"p/v\"", "256K"), "f.toml").expect_err("too large");
    assert!(err.0.contains("from 4K to 128K"), "{}", err.0);
    let err =
        Config::parse(&lun("file", "path = \"f.img\"", "64K"), "f.toml").expect_err("file LUN");
    assert!(err.0.contains("applies only to backend"), "{}", err.0);
}

#[test]
fn pool_cache_size_is_checked() {
    let pool = |size: &str| {
        format!("[[pool]]\nname = \"tank\"\ndevices = [{{ path = \"a.img\", size = \"1G\" }}]\ncache_size = \"{size}\"\n")
    };
    let cfg = Config::parse(&pool("64M"), "f.toml").expect("valid cache size");
    assert_eq!(cfg.pools[0].cache_size.as_deref(), Some("64M"));
    let err = Config::parse(&pool("lots"), "f.toml").expect_err("bad cache size");
    assert!(err.0.contains("f.toml:4:") && err.0.contains("cache_size"), "{}", err.0);
}

fn chap_target(chap: &str) -> String {
    format!(
        "[[target]]\niqn = \"iqn.2026-11.io.ferrite:t\"\nchap = {{ {chap} }}\n[[target.lun]]\n\
         id = 0\nbackend = \"memory\"\nsize = \"64M\"\n"
    )
}

#[test]
fn short_chap_secrets_are_refused_with_the_key_named() {
    let err = Config::parse(&chap_target("user = \"u\", secret = \"short\""), "f.toml")
        .expect_err("5-byte secret");
    assert_eq!(
        err.0,
        "f.toml:3: target iqn.2026-11.io.ferrite:t: chap.secret is 5 bytes; \
         CHAP secrets must be at least 12 bytes (RFC 7143)"
    );
    let mutual = "user = \"u\", secret = \"twelve-bytes\", mutual_user = \"t\", \
                  mutual_secret = \"eleven-byte\"";
    let err = Config::parse(&chap_target(mutual), "f.toml").expect_err("11-byte secret");
    assert!(err.0.contains("chap.mutual_secret is 11 bytes"), "{}", err.0);
    let discovery = "[discovery]\nchap = { user = \"d\", secret = \"x\" }\n";
    let err = Config::parse(discovery, "f.toml").expect_err("1-byte discovery secret");
    assert_eq!(
        err.0,
        "f.toml:2: discovery: chap.secret is 1 bytes; \
         CHAP secrets must be at least 12 bytes (RFC 7143)"
    );
    let long = format!("user = \"u\", secret = \"{}\"", "s".repeat(256));
    let err = Config::parse(&chap_target(&long), "f.toml").expect_err("256-byte secret");
    assert!(err.0.contains("chap.secret is 256 bytes"), "{}", err.0);
    Config::parse(&chap_target("user = \"u\", secret = \"twelve-bytes\""), "f.toml")
        .expect("a 12-byte secret is accepted");
}

#[test]
fn login_limits_are_checked() {
    let daemon = |body: &str| Config::parse(&format!("[daemon]\n{body}\n"), "f.toml");
    let valid = daemon(
        "max_pending_logins_per_portal = 64\nmax_pending_logins_per_source = 8\n\
         first_pdu_timeout_ms = 2000\nauth_failure_delay_ms = 10\n\
         auth_failure_delay_max_ms = 100",
    )
    .expect("valid limits");
    assert_eq!(valid.daemon.max_pending_logins_per_source, Some(8));
    let err = daemon("max_pending_logins_per_source = 0").expect_err("zero cap");
    assert!(err.0.contains("f.toml:2: [daemon] max_pending_logins_per_source"), "{}", err.0);
    let err = daemon("first_pdu_timeout_ms = 40000").expect_err("beyond the login timeout");
    assert!(err.0.contains("must be 1 to login_timeout_ms (30000)"), "{}", err.0);
    let err = daemon("auth_failure_delay_ms = 9000").expect_err("above the default cap");
    assert!(err.0.contains("at most auth_failure_delay_max_ms (8000)"), "{}", err.0);
    let err = daemon("auth_failure_delay_max_ms = 600000").expect_err("cap too large");
    assert!(err.0.contains("at most 60000"), "{}", err.0);
}

#[test]
fn unknown_key_is_refused() {
    let err = Config::parse("[daemon]\nshard = 2\n", "f.toml").expect_err("unknown key");
    assert!(err.0.contains("f.toml:2:"), "{}", err.0);
}

#[test]
fn demo_config_is_valid() {
    let demo = Config::demo(&[]);
    assert_eq!(demo.portals[0].address, DEFAULT_PORTAL);
    assert_eq!(demo.targets[0].luns.len(), 1);
    assert_eq!(demo.daemon.metrics.as_deref(), Some(DEFAULT_METRICS));
}

#[test]
fn names_in_the_config_follow_the_rule() {
    let pool = |name: &str| {
        format!("[[pool]]\nname = \"{name}\"\ndevices = [{{ path = \"a.img\", size = \"1G\" }}]\n")
    };
    assert!(Config::parse(&pool("tank-1.a:b"), "f.toml").is_ok());
    for bad in ["", ".t", "ta nk", "ta\\nnk", "ta\\u001bnk", "t/a"] {
        let err = Config::parse(&pool(bad), "f.toml").expect_err(bad);
        assert!(err.0.contains(engine::dataset::NAME_RULE), "{}", err.0);
        assert!(!err.0.contains('\n'), "one line: {:?}", err.0);
    }
    let lun = |volume: &str, alias: &str| {
        format!(
            "{}[[target]]\niqn = \"iqn.2026-11.io.ferrite:t\"\nalias = \"{alias}\"\n\
             [[target.lun]]\nid = 0\nbackend = \"volume\"\nvolume = \"{volume}\"\nsize = \"64M\"\n",
            pool("tank")
        )
    };
    assert!(Config::parse(&lun("tank/v1", "a1"), "f.toml").is_ok());
    let err = Config::parse(&lun("tank/v\\u001b1", "a1"), "f.toml").expect_err("ESC in volume");
    assert!(err.0.contains("bad volume name"), "{}", err.0);
    let err = Config::parse(&lun("tank/v1", "a\\n1"), "f.toml").expect_err("newline in alias");
    assert!(err.0.contains("bad target alias name"), "{}", err.0);
}

#[test]
fn backends_and_addresses_are_checked() {
    assert!(check_backend("uring").is_ok());
    let err = check_backend("foo").expect_err("foo");
    assert!(err.contains("\"foo\"") && err.contains("auto, uring or epoll"), "{err}");
    assert_eq!(
        resolve_address("portal", "127.0.0.1:3260").expect("ip"),
        "127.0.0.1:3260".parse::<SocketAddr>().expect("addr")
    );
    let local = resolve_address("portal", "localhost:3260").expect("localhost resolves");
    assert!(local.ip().is_loopback() && local.port() == 3260, "{local}");
    for bad in ["localhost", "localhost:99999", ":3260", "no such host.invalid:3260"] {
        let err = resolve_address("portal", bad).expect_err(bad);
        assert!(err.contains("portal address"), "{err}");
    }
}

#[test]
fn sanitize_rate_is_a_size_above_zero_and_defaults_to_the_target_default() {
    let lun = |extra: &str| {
        format!(
            "[[target]]\niqn = \"iqn.2026-11.io.ferrite:t\"\n[[target.lun]]\nid = 0\n\
             backend = \"memory\"\nsize = \"64M\"\n{extra}\n"
        )
    };
    let rate = |extra: &str| {
        let config = Config::parse(&lun(extra), "f.toml").expect("valid");
        lun_sanitize_bytes_per_s(&config.targets[0].luns[0])
    };
    assert_eq!(rate(""), Ok(DEFAULT_SANITIZE_BYTES_PER_S));
    assert_eq!(rate("sanitize_rate = \"32M\""), Ok(32 << 20));
    let err = Config::parse(&lun("sanitize_rate = \"0\""), "f.toml").expect_err("zero");
    assert!(err.0.starts_with("f.toml:7: LUN 0: sanitize_rate: "), "{}", err.0);
    let err = Config::parse(&lun("sanitize_rate = \"fast\""), "f.toml").expect_err("not a size");
    assert!(err.0.starts_with("f.toml:7: LUN 0: sanitize_rate: "), "{}", err.0);
}

#[test]
fn scrub_rate_is_a_size_above_zero_and_defaults_to_256m() {
    let parse = |extra: &str| {
        let text =
            format!("[[pool]]\nname = \"tank\"\ndevices = [{{ path = \"a.img\" }}]\n{extra}\n");
        Config::parse(&text, "f.toml")
    };
    let rate_of = |extra: &str| pool_scrub_bytes_per_s(&parse(extra).expect("valid").pools[0]);
    assert_eq!(rate_of(""), Ok(256 << 20));
    assert_eq!(rate_of("scrub_rate = \"64M\""), Ok(64 << 20));
    for bad in ["0", "quick"] {
        let err = parse(&format!("scrub_rate = \"{bad}\"")).expect_err("refused");
        assert!(err.0.starts_with("f.toml:4: pool tank: scrub_rate"), "{bad}: {}", err.0);
    }
}

#[test]
fn scrub_interval_is_a_duration_or_off_and_defaults_to_30_days() {
    let parse = |extra: &str| {
        let text =
            format!("[[pool]]\nname = \"tank\"\ndevices = [{{ path = \"a.img\" }}]\n{extra}\n");
        Config::parse(&text, "f.toml")
    };
    let interval_of = |extra: &str| pool_scrub_interval(&parse(extra).expect("valid").pools[0]);
    let day = std::time::Duration::from_secs(86400);
    assert_eq!(interval_of(""), Ok(Some(30 * day)));
    assert_eq!(interval_of("scrub_interval = \"7d\""), Ok(Some(7 * day)));
    assert_eq!(interval_of("scrub_interval = \"12h\""), Ok(Some(day / 2)));
    assert_eq!(interval_of("scrub_interval = \"off\""), Ok(None));
    for bad in ["0", "monthly", "-1d"] {
        let err = parse(&format!("scrub_interval = \"{bad}\"")).expect_err("refused");
        assert!(err.0.starts_with("f.toml:4: pool tank: scrub_interval"), "{bad}: {}", err.0);
        assert!(err.0.contains("or off"), "{bad}: {}", err.0);
    }
}
