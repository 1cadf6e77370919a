//! Nothing of kmodfarm's own environment reaches a sandboxed command. One test alone in its binary: it sets
//! a variable in its own process, which must not race with other threads.

mod common;

use common::{bubblewrap, Fixture};
use kmf_sandbox::{HostRunner, Sandbox};

#[test]
fn the_environment_is_cleared() {
    // Set before any other thread exists (the runtime is built after).
    std::env::set_var("KMF_TEST_SECRET", "hunter2");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "also-secret");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let f = Fixture::new();
        let script = "env | sort | grep -v -E '^(_|SHLVL|PWD)='";
        let mut spec = f.spec(script);
        spec.env = vec![("KBUILD_BUILD_USER".into(), "kmodfarm".into())];

        // On the host without isolation: only the given environment and the PATH default.
        spec.cwd = f.build.clone();
        let out = HostRunner.run(&spec).await.unwrap();
        assert!(out.success(), "{}", f.log_text());
        assert_eq!(
            f.output(),
            "KBUILD_BUILD_USER=kmodfarm\nPATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin\n"
        );

        let Some(bw) = bubblewrap() else { return };
        spec.cwd = "/build".into();
        let out = bw.run(&spec).await.unwrap();
        assert!(out.success(), "{}", f.log_text());
        assert_eq!(
            f.output(),
            "HOME=/build\nKBUILD_BUILD_USER=kmodfarm\nPATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin\n"
        );
        // The caller's own PATH and HOME win over the defaults.
        spec.env = vec![("PATH".into(), "/usr/bin:/bin".into()), ("HOME".into(), "/tmp".into())];
        let out = bw.run(&spec).await.unwrap();
        assert!(out.success(), "{}", f.log_text());
        assert_eq!(f.output(), "HOME=/tmp\nPATH=/usr/bin:/bin\n");
        // The process environment of the sandboxed command, as the kernel has it, holds no secret either.
        let out = bw
            .run(&f.spec("cat /proc/self/environ /proc/1/environ 2>/dev/null | tr '\\0' '\\n' | grep -c SECRET || true"))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(f.output(), "0\n");
    });
}
