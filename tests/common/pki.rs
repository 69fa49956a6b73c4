//! A test CA and a server certificate for 127.0.0.1/localhost signed by it (rcgen), written as PEM
//! files, for the tests that start `vigil serve --tls-cert`. Included with
//! `#[path = "common/pki.rs"] mod pki;`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM file paths written into `dir`.
pub struct ServerPki {
    /// The CA a client trusts (`ca.pem`).
    pub ca: String,
    /// The server's certificate (`server.pem`).
    pub cert: String,
    /// The server's private key (`server.key`).
    pub key: String,
}

/// A fresh CA named `ca_name` and a server certificate it signed, in `dir`.
pub fn server_pki(dir: &Path, ca_name: &str) -> ServerPki {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, ca_name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let mut p =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "vigil");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let k = KeyPair::generate().unwrap();
    let write = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f.display().to_string()
    };
    ServerPki {
        ca: write("ca.pem", &root.pem()),
        cert: write("server.pem", &p.signed_by(&k, &root).unwrap().pem()),
        key: write("server.key", &k.serialize_pem()),
    }
}
