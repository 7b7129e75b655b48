//! What the model's examples share: reading the options they have in common.

use idem_model::Variant;

/// The variant `--variant` names; for any other name, the known names and exit status 2.
pub(crate) fn variant(name: Option<String>) -> Variant {
    let Some(variant) = name.as_deref().and_then(Variant::from_name) else {
        eprintln!("unknown variant {name:?}: {}", Variant::NAMES);
        std::process::exit(2);
    };
    variant
}

/// Exits with status 2 for an option the example does not know.
pub(crate) fn unknown_option(other: &str) -> ! {
    eprintln!("unknown option {other}; see the example's doc comment");
    std::process::exit(2);
}
