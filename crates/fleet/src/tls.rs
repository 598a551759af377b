//! rustls configurations of both sides. The coordinator's server asks every client
//! for a certificate and verifies any it gets against the fleet CA; a connection
//! without one may only fetch the CA and join (the routes enforce that). Clients
//! trust the fleet CA only, never the system's roots. A host that joins does not
//! have the CA yet: it pins the CA's fingerprint from its token (`pinned_client`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::pki::{fingerprint, first_pem_block, pem_to_der};
use crate::{Error, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(pem_to_der(ca_pem)?))?;
    Ok(Arc::new(roots))
}

fn key_der(key_pem: &str) -> Result<PrivateKeyDer<'static>> {
    let der = first_pem_block(key_pem, "PRIVATE KEY")
        .ok_or_else(|| Error::invalid("private key", "no PEM PRIVATE KEY (PKCS#8) block"))?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
}

/// The coordinator's server: its certificate (sent with the CA) and key; client
/// certificates verified against the CA when given.
pub fn server_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::invalid("client verifier", e.to_string()))?;
    let chain = vec![CertificateDer::from(pem_to_der(cert_pem)?), CertificateDer::from(pem_to_der(ca_pem)?)];
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der(key_pem)?)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client that trusts the fleet CA only, with a client certificate when given.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientConfig> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    Ok(match identity {
        Some((cert_pem, key_pem)) => {
            b.with_client_auth_cert(vec![CertificateDer::from(pem_to_der(cert_pem)?)], key_der(key_pem)?)?
        }
        None => b.with_no_client_auth(),
    })
}

/// A client for joining: trusts a server whose chain holds a CA with this SHA-256
/// fingerprint and whose certificate that CA signed.
pub fn pinned_client(ca_fingerprint: [u8; 32]) -> Result<ClientConfig> {
    let v = Arc::new(Pinned { pin: ca_fingerprint, provider: provider() });
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(v)
        .with_no_client_auth())
}

#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.iter().find(|c| fingerprint(c) == self.pin).ok_or_else(|| {
            rustls::Error::General(
                "the coordinator's CA does not match the fingerprint in the token: \
                 this is not the coordinator that issued it (or the token is for another one)"
                    .into(),
            )
        })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{generate_client_key, Ca};

    #[test]
    fn configs_build_from_generated_material() {
        let (ca, _) = Ca::generate().unwrap();
        let (cert, key) = ca.server_cert(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        server_config(&ca.cert_pem, &cert, &key).unwrap();
        let (ckey, pk) = generate_client_key().unwrap();
        let ccert = ca.client_cert("db1", crate::role::RoleKind::Agent, &pk).unwrap();
        client_config(&ca.cert_pem, Some((&ccert, &ckey))).unwrap();
        pinned_client(ca.fingerprint()).unwrap();
    }
}
