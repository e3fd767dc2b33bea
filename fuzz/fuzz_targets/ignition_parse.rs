//! Any byte string given to the Ignition parser yields a config or an error, never a
//! panic; a config that parsed must survive serialize → parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((cfg, _report)) = ignition_config::parse(data) {
        let _ = ignition_config::validate(&cfg, ignition_config::SpecVersion::LATEST);
        let json = serde_json::to_vec(&cfg).expect("a parsed config serializes");
        let (again, _) = ignition_config::parse(&json).expect("serialized config parses");
        assert_eq!(cfg, again, "round trip changed the config");
    }
});
