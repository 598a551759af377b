//! The fleet's certificate authority and the certificates it signs (rcgen).
//!
//! The CA is a self-signed ECDSA P-256 certificate kept by the coordinator. It signs
//! the coordinator's server certificate and one client certificate per enrolled
//! agent, operator or viewer. An agent's key pair is made on its own host: the
//! coordinator only ever sees the public key. A certificate is known by its SHA-256
//! fingerprint, which is what the coordinator's registry records (and revokes).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};

use crate::{Error, Result};

const CA_NAME: &str = "kura fleet CA";

/// SHA-256 of DER bytes (a certificate's fingerprint).
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The DER bytes of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    first_pem_block(pem, "CERTIFICATE").ok_or_else(|| Error::invalid("certificate", "no PEM CERTIFICATE block"))
}

/// The DER bytes of the first `-----BEGIN {label}-----` block.
pub fn first_pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

/// The CA: its certificate (PEM, as first written) and its key.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
    /// The issuer as rcgen needs it: same name and key as `cert_pem`.
    issuer: rcgen::Certificate,
}

impl Ca {
    /// A new CA. Returns it and its key in PEM (the caller stores the key 0600).
    pub fn generate() -> Result<(Ca, String)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params().self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let ca = Ca { cert_pem: cert.pem(), key, issuer: cert };
        Ok((ca, key_pem))
    }

    /// The CA from its stored certificate and key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem)?;
        // Issuing needs the CA's name and key identifier only; both are rebuilt from
        // the same parameters and key, so the issued certificates chain to `cert_pem`.
        let issuer = ca_params().self_signed(&key)?;
        pem_to_der(cert_pem)?;
        Ok(Ca { cert_pem: cert_pem.to_string(), key, issuer })
    }

    pub fn cert_der(&self) -> Vec<u8> {
        pem_to_der(&self.cert_pem).unwrap_or_default()
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert_der())
    }

    /// A server certificate for `names` (DNS names or IP addresses) with a fresh key:
    /// (certificate PEM, key PEM).
    pub fn server_cert(&self, names: &[String]) -> Result<(String, String)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "kura coordinator".into()));
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate for `name` with role `role`, over the public key the
    /// client sent (raw P-256 point). The name comes from the coordinator's token,
    /// never from the client.
    pub fn client_cert(&self, name: &str, role: crate::role::RoleKind, public_key: &[u8]) -> Result<String> {
        let pk = RawP256(public_key.to_vec());
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err(Error::invalid("public key", "expected an uncompressed ECDSA P-256 point (65 bytes)"));
        }
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(&pk, &self.issuer, &self.key)?.pem())
    }
}

struct RawP256(Vec<u8>);

impl PublicKeyData for RawP256 {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A new key pair for an agent or operator: (key PEM, raw public key).
pub fn generate_client_key() -> Result<(String, Vec<u8>)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    Ok((key.serialize_pem(), key.public_key_raw().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloaded_ca_signs_certificates_that_chain_to_the_stored_one() {
        let (ca, key_pem) = Ca::generate().unwrap();
        let again = Ca::load(&ca.cert_pem, &key_pem).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        let (_k, pk) = generate_client_key().unwrap();
        let pem = again.client_cert("db1", crate::role::RoleKind::Agent, &pk).unwrap();
        let der = pem_to_der(&pem).unwrap();
        // The chain check proper is in tls::tests; here: a certificate came out.
        assert!(der.len() > 100);
        assert!(again.client_cert("db1", crate::role::RoleKind::Agent, &[1, 2, 3]).is_err());
    }
}
