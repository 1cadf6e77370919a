//! What a variant's store prefix holds beside its modules for consumers to check them: `SHA256SUMS` (in the
//! format `sha256sum -c` reads) and an in-toto Statement v1 with a SLSA provenance v1 predicate
//! (`provenance.intoto.json`).

use serde_json::{json, Value};

use kmf_types::published::PublishedVariant;

/// File names inside a variant's store prefix.
pub const SHA256SUMS: &str = "SHA256SUMS";
pub const PROVENANCE: &str = "provenance.intoto.json";

/// The build type named in the provenance: kbuild of an out-of-tree module against a kernel's header packages
/// in a sandboxed builder, as kmodfarm's README describes it.
pub const BUILD_TYPE: &str =
    "https://github.com/kmodfarm/kmodfarm/blob/main/README.md#build-type-kbuild-v1";

/// `<sha256>  <file>` per module, sorted by file name, as `sha256sum` writes it.
pub fn sha256sums(metadata: &PublishedVariant) -> String {
    let mut lines: Vec<String> = metadata
        .modules
        .iter()
        .map(|m| format!("{}  {}\n", m.sha256, m.file_name))
        .chain(
            metadata
                .delivery
                .firmware
                .iter()
                .map(|f| format!("{}  {}\n", f.sha256, f.file_name)),
        )
        .collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines.concat()
}

/// The in-toto statement: subjects are the modules with their SHA256; the predicate records what was built
/// (driver, variant), with what (source digest, every header package with its SHA256, the builder identity)
/// and by what (kmodfarm's version, the build key).
pub fn provenance(metadata: &PublishedVariant) -> Value {
    let subjects: Vec<Value> = metadata
        .modules
        .iter()
        .map(|m| json!({ "name": m.file_name, "digest": { "sha256": m.sha256 } }))
        .collect();
    let mut dependencies = vec![json!({
        "name": format!("{}-{}-source", metadata.driver, metadata.driver_version),
        "digest": { "sha256": metadata.inputs.source_sha256 },
        "annotations": { "kind": "source", "digest_of": "kmodfarm source tree digest" },
    })];
    if let Some(git) = &metadata.inputs.git {
        // The tree above came from this commit (SLSA's `gitCommit` digest).
        let source = &mut dependencies[0];
        source["uri"] = json!(git.pinned_spec());
        source["digest"]["gitCommit"] = json!(git.commit);
        if let Some(r) = &git.reference {
            source["annotations"]["ref"] = json!(r);
        }
    }
    for p in &metadata.inputs.packages {
        let mut d = json!({
            "name": p.file_name,
            "digest": { "sha256": p.sha256 },
            "annotations": { "kind": "header-package", "size": p.size },
        });
        if let Some(url) = &p.url {
            d["uri"] = json!(url);
        }
        // How the package was proven before anything was built from it: the signed Release (SHA256, Date,
        // key) whose index listed its digest, its own signature, or that nothing proved it.
        d["annotations"]["proof"] = match &p.proof {
            Some(proof) => serde_json::to_value(proof).expect("a proof serialises"),
            None => json!({ "by": "unrecorded" }),
        };
        dependencies.push(d);
    }
    let identity = &metadata.toolchain.builder_identity;
    let (builder_id, builder_digest) = identity.split_once('@').unwrap_or((identity, ""));
    dependencies.push(json!({
        "name": builder_id,
        "digest": { "kmodfarm-builder": builder_digest },
        "annotations": {
            "kind": "builder",
            "identity": identity,
            "suite": metadata.toolchain.suite,
            "cc_version_text": metadata.toolchain.cc_version_text,
        },
    }));
    let v = &metadata.variant;
    let mut internal = json!({
        "builder": metadata.toolchain.builder,
        "input_key": metadata.input_key,
    });
    // Published from a worker's bundle, the sandbox is the worker's word (below), not a parameter the
    // publisher saw.
    if !metadata.toolchain.sandbox.is_empty() {
        internal["sandbox"] = json!(metadata.toolchain.sandbox);
    }
    let mut statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "driver": metadata.driver,
                    "driver_version": metadata.driver_version,
                    "distribution": v.distribution,
                    "architecture": v.architecture.to_string(),
                    "kernel_release": metadata.kernel_release,
                    "kversion": v.kversion,
                    "kernelversion": v.kernelversion,
                    "packageversion": v.packageversion,
                    "output": v.output,
                },
                "internalParameters": internal,
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": format!("kmodfarm/{}", metadata.kmodfarm_version),
                    "version": {
                        "kmodfarm": metadata.kmodfarm_version,
                        "builder_identity": identity,
                    },
                },
                "metadata": {
                    "invocationId": metadata.build_key,
                    "finishedOn": metadata.built_at,
                },
            },
        },
    });
    if let Some(claims) = &metadata.worker_claims {
        // What the worker said and nothing checked, labelled as such: a consumer must not read it as part of
        // the build's definition.
        statement["predicate"]["runDetails"]["byproducts"] = json!([{
            "name": "worker-claims",
            "annotations": {
                "verified": false,
                "claims": claims,
            },
        }]);
    }
    statement
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as a reader gets it from a store.
    fn record() -> PublishedVariant {
        let json = serde_json::json!({
            "schema": 1, "artifacts": "0123456789abcdef/", "kmodfarm_version": "0.1.0",
            "driver": "hello", "driver_version": "0.1.0", "result": "success",
            "variant": {"kversion": "6.1.0-9-amd64", "distribution": "debian", "architecture": "x86_64",
                "kernelurls": [], "output": "0.1.0/debian/x86_64/6.1.0-9-amd64", "driverversion": "0.1.0"},
            "kernel_release": "6.1.0-9-amd64",
            "modules": [
                {"file_name": "zz.ko", "relative_path": "zz.ko", "sha256": "b".repeat(64), "size": 2},
                {"file_name": "aa.ko", "relative_path": "aa.ko", "sha256": "a".repeat(64), "size": 1},
            ],
            "toolchain": {"builder": "debian-bookworm-gcc-12", "builder_identity": "debian-bookworm-gcc-12@d1",
                "suite": "bookworm", "cc_version_text": "gcc-12", "sandbox": "bubblewrap"},
            "inputs": {"source_sha256": "c".repeat(64), "packages": [
                {"file_name": "h.deb", "sha256": "d".repeat(64), "size": 9, "url": "https://deb.example/h.deb"}]},
            "build_key": "0123456789abcdef0123", "input_key": "in",
            "built_at": "2026-11-29T12:00:00Z", "log": "build.log",
        });
        PublishedVariant::parse(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn sums_are_sorted_by_file_name() {
        assert_eq!(
            sha256sums(&record()),
            format!("{}  aa.ko\n{}  zz.ko\n", "a".repeat(64), "b".repeat(64))
        );
    }

    #[test]
    fn the_statement_names_modules_inputs_and_builder() {
        let p = provenance(&record());
        assert_eq!(p["subject"][1]["name"], "aa.ko");
        let deps = p["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(deps[0]["name"], "hello-0.1.0-source");
        assert_eq!(deps[1]["uri"], "https://deb.example/h.deb");
        assert_eq!(deps[2]["digest"]["kmodfarm-builder"], "d1");
        assert_eq!(
            p["predicate"]["runDetails"]["metadata"]["invocationId"],
            "0123456789abcdef0123"
        );
        assert_eq!(
            p["predicate"]["runDetails"]["builder"]["id"],
            "kmodfarm/0.1.0"
        );
        assert!(deps[0].get("uri").is_none());
        let internal = &p["predicate"]["buildDefinition"]["internalParameters"];
        assert_eq!(internal["sandbox"], "bubblewrap");
        assert!(p["predicate"]["runDetails"].get("byproducts").is_none());
    }

    /// Published from a worker's bundle: the sandbox is not a build parameter but the worker's labelled
    /// claim, beside its timings.
    #[test]
    fn a_workers_claims_are_labelled_unverified() {
        let mut r = record();
        r.toolchain.sandbox = String::new();
        r.worker_claims = Some(kmf_types::published::WorkerClaims {
            shard: 3,
            kmodfarm_version: "0.1.0".into(),
            sandbox: "FORGED-none".into(),
            boot: None,
            durations: Default::default(),
            built_at: "2026-11-29T11:00:00Z".into(),
        });
        let p = provenance(&r);
        let internal = &p["predicate"]["buildDefinition"]["internalParameters"];
        assert!(internal.get("sandbox").is_none(), "{internal}");
        let claims = &p["predicate"]["runDetails"]["byproducts"][0];
        assert_eq!(claims["name"], "worker-claims");
        assert_eq!(claims["annotations"]["verified"], false);
        assert_eq!(claims["annotations"]["claims"]["sandbox"], "FORGED-none");
        assert_eq!(claims["annotations"]["claims"]["shard"], 3);
    }

    #[test]
    fn a_git_source_names_its_commit() {
        let mut r = record();
        r.inputs.git = Some(kmf_types::published::GitOrigin {
            url: "https://git.example/hello.git".into(),
            reference: Some("v1".into()),
            commit: "e".repeat(40),
            subdirectory: Some("module".into()),
            upstream_unreachable: None,
        });
        let p = provenance(&r);
        let source = &p["predicate"]["buildDefinition"]["resolvedDependencies"][0];
        assert_eq!(source["digest"]["gitCommit"], "e".repeat(40));
        assert_eq!(source["digest"]["sha256"], "c".repeat(64));
        assert_eq!(
            source["uri"],
            format!(
                "git+https://git.example/hello.git@{}#subdirectory=module",
                "e".repeat(40)
            )
        );
        assert_eq!(source["annotations"]["ref"], "v1");
    }
}
