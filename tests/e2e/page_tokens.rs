//! Listings under narrow grants: pages hold only what the caller may see, and page
//! tokens name nothing (issue 11, point 2).

use std::collections::BTreeSet;

use tonic::Code;

use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::pb::{
    CreateAliasRequest, CreateKeyRequest, ListAliasesRequest, ListKeysRequest,
};
use crate::support::security::{start_raw, token_hash, with_token, write};
use crate::support::{assert_error, temp_dir, test_config};

const OPERATOR: &str = "operator-token-1b7d";
const NARROW: &str = "narrow-token-c04e";

#[tokio::test]
async fn a_narrow_principal_walks_only_its_keys_and_tokens_name_nothing() {
    let tmp = temp_dir();
    let auth = write(
        tmp.path(),
        "auth.toml",
        &format!(
            r#"
[[principals]]
name = "operator"
token_sha256 = "{}"
operations = ["*"]
keys = ["*"]

[[principals]]
name = "narrow"
token_sha256 = "{}"
operations = ["ListKeys", "ListAliases"]
keys = ["alias/narrow-*"]
"#,
            token_hash(OPERATOR),
            token_hash(NARROW)
        ),
    );
    let mut config = test_config(&tmp.path().join("data"));
    config.auth_config = Some(auth);
    let (_server, addr) = start_raw(config).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut kms = KeyManagementServiceClient::new(channel);

    let mut mine = BTreeSet::new();
    let mut all_names = Vec::new();
    for i in 0..8 {
        let key_id = kms
            .create_key(with_token(CreateKeyRequest::default(), OPERATOR))
            .await
            .unwrap()
            .into_inner()
            .key_metadata
            .unwrap()
            .key_id;
        let alias_name = if i % 3 == 0 {
            mine.insert(key_id.clone());
            format!("alias/narrow-{i}")
        } else {
            format!("alias/other-{i}")
        };
        kms.create_alias(with_token(
            CreateAliasRequest {
                key_id: key_id.clone(),
                alias_name: alias_name.clone(),
            },
            OPERATOR,
        ))
        .await
        .unwrap();
        all_names.push(key_id);
        all_names.push(alias_name);
    }

    // ListKeys, PageSize 1.
    let (mut seen, mut tokens, mut token) = (Vec::new(), Vec::new(), String::new());
    loop {
        let page = kms
            .list_keys(with_token(
                ListKeysRequest {
                    page_size: 1,
                    page_token: token.clone(),
                },
                NARROW,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.keys.len(), 1, "every page holds one visible key");
        seen.extend(page.keys.into_iter().map(|k| k.key_id));
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token.clone());
        token = page.next_page_token;
    }
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), mine);
    assert_eq!(seen.len(), mine.len());

    // ListAliases, PageSize 1.
    let (mut aliases, mut token) = (Vec::new(), String::new());
    loop {
        let page = kms
            .list_aliases(with_token(
                ListAliasesRequest {
                    key_id: String::new(),
                    page_size: 1,
                    page_token: token.clone(),
                },
                NARROW,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.aliases.len(), 1, "every page holds one visible alias");
        aliases.extend(page.aliases.into_iter().map(|a| a.alias_name));
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token.clone());
        token = page.next_page_token;
    }
    assert_eq!(
        aliases,
        ["alias/narrow-0", "alias/narrow-3", "alias/narrow-6"]
    );

    for token in &tokens {
        for name in &all_names {
            assert!(!token.contains(name.as_str()), "{token} names {name}");
        }
        assert!(
            !token.contains("key-") && !token.contains("alias/"),
            "{token}"
        );
    }

    // A key ID as a token (the old form), or a tampered token: InvalidParameter.
    let mut tampered = tokens[0].clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    for bad in [seen[0].clone(), String::from_utf8(tampered).unwrap()] {
        assert_error(
            kms.list_keys(with_token(
                ListKeysRequest {
                    page_size: 1,
                    page_token: bad,
                },
                NARROW,
            ))
            .await,
            Code::InvalidArgument,
            "InvalidParameter",
        );
    }
    // The operator's token does not open for the narrow principal.
    let operator_token = kms
        .list_keys(with_token(
            ListKeysRequest {
                page_size: 1,
                page_token: String::new(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert_error(
        kms.list_keys(with_token(
            ListKeysRequest {
                page_size: 1,
                page_token: operator_token,
            },
            NARROW,
        ))
        .await,
        Code::InvalidArgument,
        "InvalidParameter",
    );
}
