//! gRPC clients other than grpc-go and tonic: Python's grpcio (on
//! grpc-core, as the C++, Ruby and PHP clients are) names the socket path
//! as the `:authority` of a unix-socket call, which HTTP/2 servers that
//! check authorities refuse. crius must answer them as containerd does.
//!
//! Needs `python3` with `grpcio` (`pip install grpcio`; e2e/run-tests.sh
//! installs it) and the `crius` binary; fails, never skips, without them.

use std::process::Command;

use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks, cri};
use k8s_cri::v1::VersionRequest;

/// Calls Version and ListImages with hand-encoded protobuf (no generated
/// stubs), through each spelling of a unix-socket target; prints each
/// answer as hex, one a line.
const CLIENT: &str = r#"
import sys
import grpc

socket = sys.argv[1]
for target in ("unix://" + socket, "unix:" + socket):
    with grpc.insecure_channel(target) as channel:
        calls = [
            # VersionRequest { version: "v1" }
            ("/runtime.v1.RuntimeService/Version", bytes.fromhex("0a027631")),
            ("/runtime.v1.ImageService/ListImages", b""),
        ]
        for method, request in calls:
            call = channel.unary_unary(
                method, request_serializer=None, response_deserializer=None
            )
            print(call(request, timeout=20).hex())
"#;

/// The length-delimited fields of a protobuf message, as (number, bytes);
/// varint and fixed fields are skipped.
fn fields(mut msg: &[u8]) -> Vec<(u64, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first().expect("a varint cut short");
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !msg.is_empty() {
        let key = varint(&mut msg);
        match key & 7 {
            0 => {
                varint(&mut msg);
            }
            1 => msg = &msg[8..],
            5 => msg = &msg[4..],
            2 => {
                let len = varint(&mut msg) as usize;
                out.push((key >> 3, msg[..len].to_vec()));
                msg = &msg[len..];
            }
            t => panic!("wire type {t} in {msg:?}"),
        }
    }
    out
}

fn text(fields: &[(u64, Vec<u8>)], number: u64) -> String {
    fields
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .unwrap_or_default()
}

#[tokio::test]
async fn python_grpcio_clients_are_answered() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &images.oci.reference)
        .await
        .unwrap();
    let image_id = &images.oci.image_id;
    let want = crius
        .runtime_client()
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();

    let script = crius.dir().path().join("grpcio_client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(crius.dir().socket())
        .output()
        .expect("python3 is needed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'grpc'"),
        "grpcio is not installed: pip install grpcio (e2e/run-tests.sh does)"
    );
    assert!(out.status.success(), "the grpcio client failed:\n{stderr}");
    let answers: Vec<Vec<u8>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| hex::decode(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4, "{answers:?}");
    for pair in answers.chunks(2) {
        // VersionResponse { version, runtime_name, runtime_version,
        // runtime_api_version }
        let version = fields(&pair[0]);
        assert_eq!(text(&version, 1), want.version);
        assert_eq!(text(&version, 2), "crius");
        assert_eq!(text(&version, 3), want.runtime_version);
        assert_eq!(text(&version, 4), want.runtime_api_version);
        // ListImagesResponse { images: [Image { id, .. }] }
        let ids: Vec<String> = fields(&pair[1])
            .iter()
            .filter(|(n, _)| *n == 1)
            .map(|(_, image)| text(&fields(image), 1))
            .collect();
        assert_eq!(ids, [image_id.as_str()]);
    }

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
