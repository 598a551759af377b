//! The daemon keeps a standby current after its backup job and watches it:
//! `kura status`, `/metrics` and a `standby_unhealthy` notification when its
//! verification fails (docs/STANDBY.md).

use std::path::Path;

use crate::daemon::{eventually, Setup};
use crate::metrics::{free_port, get};
use crate::util::*;

fn events(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        all += &std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
    }
    all
}

#[test]
fn the_daemon_keeps_the_standby_current_and_alerts_when_it_fails_verification() {
    let setup = Setup::new();
    let port = free_port();
    let base = setup.repo.base().to_path_buf();
    let (flag, evdir, sb) = (base.join("service-ok"), base.join("events"), base.join("standby/db"));
    std::fs::create_dir_all(&evdir).unwrap();
    write(&flag, "");
    let db = setup.src("db");
    let tables = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [notify]\ncommand = \"cat > \\\"$(mktemp '{}/ev.XXXXXX')\\\"\"\n\n\
         [[system]]\nname = \"db\"\npriority = 3\npaths = [\"{}\"]\n\n\
         [system.standby]\npath = \"{}\"\nverify = [\"test -e {}\"]\n",
        s(&evdir),
        s(&db),
        s(&sb),
        s(&flag)
    );
    setup.configure("", &tables);
    let _d = setup.daemon();
    setup.cli(&["run", "db"]).ok();

    let st = setup.status();
    let sys = &st["systems"][0];
    let standby = &sys["standby"];
    assert_eq!(standby["health"], "healthy", "{st}");
    assert_eq!(standby["snapshot"], sys["last_snapshot"], "{st}");
    assert_eq!(standby["verify_ok"], true);
    assert_same_tree(&db, &sb, FULL);
    let m = get(port, "/metrics", &[]).unwrap().body;
    for line in ["kura_standby_healthy{system=\"db\"} 1", "kura_standby_verify_ok{system=\"db\"} 1"] {
        assert!(m.lines().any(|l| l == line), "{line:?} missing from /metrics:\n{m}");
    }
    assert!(m.contains("kura_standby_lag_seconds{system=\"db\"} 0"), "{m}");
    setup.cli(&["status"]).ok().stdout_has("STANDBY OF");

    // The service on the standby stops answering: the next backup's update fails its
    // verification, which is an alert.
    std::fs::remove_file(&flag).unwrap();
    write(&db.join("file.txt"), "changed\n");
    setup.cli(&["run", "db"]);
    let st = setup.status();
    assert_eq!(st["systems"][0]["standby"]["health"], "failed", "{st}");
    setup.cli(&["status"]).code(1).stdout_has("the standby of db failed");
    eventually(30, "the standby_unhealthy notification", || {
        events(&evdir).contains("\"event\":\"standby_unhealthy\"").then_some(())
    });
    let m = get(port, "/metrics", &[]).unwrap().body;
    assert!(m.lines().any(|l| l == "kura_standby_healthy{system=\"db\"} 0"), "{m}");
    assert!(m.lines().any(|l| l == "kura_standby_health{system=\"db\",health=\"failed\"} 1"), "{m}");
}
