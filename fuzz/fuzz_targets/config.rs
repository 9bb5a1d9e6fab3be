//! TOML text through `Config::from_toml`: no panic, and any configuration it accepts, written
//! back out with every setting explicit, is accepted again and comes back unchanged.
#![no_main]

use herald::config::Config;
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/herald/tests/config_properties/render.rs"]
mod render;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    let written = render::render(&config);
    let again = match Config::from_toml(&written) {
        Ok(again) => again,
        Err(errors) => panic!("accepted config refused when written out:\n{written}\n{errors}"),
    };
    assert_eq!(again.server, config.server, "{written}");
    assert_eq!(again.apps, config.apps, "{written}");
    assert_eq!(again.webhooks, config.webhooks, "{written}");
});
