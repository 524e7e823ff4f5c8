//! Serde for CRI protobuf messages inside JSON checkpoints: the message is
//! stored as hex of its protobuf encoding, so every field (including ones
//! later issues read, such as port mappings) survives a restart unchanged.

use serde::{Deserialize, Deserializer, Serializer};

/// Serialises a prost message as hex of its wire encoding.
pub(crate) fn serialize<M: prost::Message, S: Serializer>(
    msg: &M,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(msg.encode_to_vec()))
}

/// Parses a prost message from hex of its wire encoding.
pub(crate) fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<M, D::Error> {
    let text = String::deserialize(deserializer)?;
    let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
    M::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use cria_proto::v1::{PodSandboxConfig, PodSandboxMetadata};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        config: PodSandboxConfig,
    }

    #[test]
    fn round_trips_a_message() {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "p".into(),
                uid: "u".into(),
                namespace: "n".into(),
                attempt: 2,
            }),
            hostname: "h".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&Holder {
            config: config.clone(),
        })
        .unwrap();
        let back: Holder = serde_json::from_str(&json).unwrap();
        assert_eq!(back.config, config);
        assert!(serde_json::from_str::<Holder>(r#"{"config":"zz"}"#).is_err());
    }
}
