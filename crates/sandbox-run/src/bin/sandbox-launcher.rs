//! The launcher process of sandbox-run: runs one container and exits
fn main() {
    sandbox_run::launcher_main()
}
