//! Rebuilds when a migration changes: `sqlx::migrate!` embeds them in the binary.
fn main() {
    for dir in [
        "migrations/sqlite",
        "migrations/postgres",
        "migrations/mysql",
    ] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
