//! Any byte string given to the Ignition parser yields a config or an error, never a
//! panic; a config that parsed at its own version must survive serialize → parse
//! unchanged, and translating it up must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((version, cfg, _report)) = ignition_config::parse_exact(data) {
        let _ = ignition_config::validate(&cfg, version);
        let json = serde_json::to_vec(&cfg).expect("a parsed config serializes");
        let (again_version, again, _) =
            ignition_config::parse_exact(&json).expect("serialized config parses");
        assert_eq!(version, again_version, "round trip changed the version");
        assert_eq!(cfg, again, "round trip changed the config");
    }
    let _ = ignition_config::parse(data);
});
