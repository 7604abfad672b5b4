"""AWS Config compliance changes to findings: compliance, Id, resource type and ARN, skips, untrusted text."""

from __future__ import annotations

import hashlib

import botocore.session
import pytest

from defender_hub.codecs.asff_rules import Limits, finding_problems
from defender_hub.errors import EventMappingError, EventSkipped
from defender_hub.mapping.aws import Origin
from defender_hub.mapping.config import SERVICE_LINKED_RULE, resource_digest
from defender_hub.mapping.config_resources import (
    ACCOUNT_TYPE,
    ASFF_RESOURCE_TYPES,
    TYPE_EXCEPTIONS,
    asff_type,
    config_resource_id,
)
from tests.codecs.sources import config_event, evaluation
from tests.helpers import Convert

RULE_ARN = "arn:aws:config:eu-central-1:123456789012:config-rule/config-rule-mburzq"


@pytest.mark.parametrize(
    ("compliance", "status"),
    [
        ("COMPLIANT", "PASSED"),
        ("NON_COMPLIANT", "FAILED"),
        ("NOT_APPLICABLE", "NOT_AVAILABLE"),
        ("INSUFFICIENT_DATA", "WARNING"),
    ],
)
def test_compliance_type_gives_the_status_and_the_finding_stays_active(
    convert: Convert, compliance: str, status: str
) -> None:
    [finding] = convert(config_event(newEvaluationResult=evaluation(complianceType=compliance)))

    assert finding["Compliance"] == {"Status": status}
    assert finding["ProductFields"]["ConfigComplianceType"] == compliance
    assert finding["RecordState"] == "ACTIVE"  # Config findings are never archived
    assert finding["Severity"] == {"Label": "MEDIUM"}
    assert finding["Types"] == ["Software and Configuration Checks"]
    assert finding["ProductName"] == "Config"
    assert finding_problems(finding) == []


def test_an_unknown_compliance_type_is_refused_by_name(convert: Convert) -> None:
    with pytest.raises(EventMappingError, match=r"complianceType 'SORT_OF' is not one of COMPLIANT, NON_COMPLIANT"):
        convert(config_event(newEvaluationResult=evaluation(complianceType="SORT_OF")))


def test_the_id_is_the_rule_and_a_sha1_of_the_resource_stable_across_evaluations(convert: Convert) -> None:
    failed = convert(config_event())[0]
    passed = convert(
        config_event(
            newEvaluationResult=evaluation(complianceType="COMPLIANT", resultRecordedTime="2022-05-01T00:00:00.000Z")
        )
    )[0]
    other = convert(config_event(resourceId="another-bucket"))[0]

    digest = hashlib.sha1(b"AWS::S3::Bucket/config-integration-demo-bucket").hexdigest()
    assert failed["Id"] == passed["Id"] == f"{RULE_ARN}/finding/{digest}"
    assert resource_digest("AWS::S3::Bucket", "config-integration-demo-bucket") == digest
    assert other["Id"] != failed["Id"]
    assert passed["UpdatedAt"] == passed["CreatedAt"] == "2022-05-01T00:00:00.000Z"


def test_an_overlong_rule_arn_still_gives_an_id_within_bounds(convert: Convert) -> None:
    arn = RULE_ARN + "x" * 600

    [finding] = convert(config_event(configRuleARN=arn))

    assert len(finding["Id"]) <= Limits.ID
    assert finding == convert(config_event(configRuleARN=arn))[0]
    assert finding_problems(finding) == []


def test_the_rule_gives_title_generator_description_and_product_fields(convert: Convert) -> None:
    [finding] = convert(config_event(newEvaluationResult=evaluation(annotation="Public\x1b[31m read\u202e allowed.")))

    name = "s3-bucket-level-public-access-prohibited-config-integration-demo"
    assert finding["Title"] == name
    assert finding["GeneratorId"] == RULE_ARN
    assert finding["Description"] == f"This finding is created for a resource compliance change for config rule: {name}"
    assert finding["ProductFields"] == {
        "ConfigRuleArn": RULE_ARN,
        "ConfigRuleName": name,
        "ConfigComplianceType": "NON_COMPLIANT",
        "ResourceType": "AWS::S3::Bucket",
        "ResourceId": "config-integration-demo-bucket",
        "Annotation": "Public[31m read allowed.",
    }
    assert "SourceUrl" not in finding


def test_a_service_linked_rule_is_skipped(convert: Convert) -> None:
    with pytest.raises(EventSkipped) as skipped:
        convert(config_event(configRuleName="securityhub-s3-bucket-ssl-requests-only-4d2b7a"))

    assert (skipped.value.reason, skipped.value.source) == (SERVICE_LINKED_RULE, "config")


def test_the_detail_s_account_and_region_win_else_the_envelope_s(convert: Convert) -> None:
    envelope = {"account": "210987654321", "region": "us-west-2"}

    own = convert(config_event(envelope))[0]
    fallback = convert(config_event(envelope, awsAccountId=..., awsRegion=...))[0]

    assert (own["AwsAccountId"], own["Resources"][0]["Region"]) == ("123456789012", "eu-central-1")
    assert (fallback["AwsAccountId"], fallback["Resources"][0]["Region"]) == ("210987654321", "us-west-2")
    assert fallback["ProductArn"] == "arn:aws:securityhub:us-west-2:210987654321:product/210987654321/default"


def test_a_bad_account_or_time_is_refused_plainly(convert: Convert) -> None:
    with pytest.raises(EventMappingError, match="12 digits"):
        convert(config_event(awsAccountId="12345"))
    with pytest.raises(EventMappingError, match="not an AWS Region"):
        convert(config_event(awsRegion="Frankfurt"))
    with pytest.raises(EventMappingError, match="configRuleName has no printable"):
        convert(config_event(configRuleName="\x00\x01"))
    with pytest.raises(EventMappingError, match="resourceId has no printable"):
        convert(config_event(resourceId="\x00"))
    with pytest.raises(Exception, match=r"^newEvaluationResult.resultRecordedTime: not an ISO 8601"):
        convert(config_event(newEvaluationResult=evaluation(resultRecordedTime="yesterday")))


def test_a_long_rule_name_is_cut_and_the_description_stays_within_bounds(convert: Convert) -> None:
    [finding] = convert(config_event(configRuleName="r" * 5000))

    assert len(finding["Title"]) == 128
    assert len(finding["Description"]) <= Limits.DESCRIPTION
    assert finding_problems(finding) == []


def test_the_resource_is_typed_and_named_by_its_arn_in_the_event_s_partition(convert: Convert) -> None:
    [china] = convert(config_event(awsRegion="cn-north-1", resourceId="logs"))

    assert china["Resources"] == [
        {"Type": "AwsS3Bucket", "Id": "arn:aws-cn:s3:::logs", "Partition": "aws-cn", "Region": "cn-north-1"}
    ]


@pytest.mark.parametrize(
    ("resource_type", "expected"),
    [
        ("AWS::S3::Bucket", "AwsS3Bucket"),
        ("AWS::EC2::Instance", "AwsEc2Instance"),
        ("AWS::EC2::SecurityGroup", "AwsEc2SecurityGroup"),
        ("AWS::EC2::VPC", "AwsEc2Vpc"),
        ("AWS::EC2::EIP", "AwsEc2Eip"),
        ("AWS::DynamoDB::Table", "AwsDynamoDbTable"),
        ("AWS::RDS::DBInstance", "AwsRdsDbInstance"),
        ("AWS::IAM::Role", "AwsIamRole"),
        ("AWS::Lambda::Function", "AwsLambdaFunction"),
        ("AWS::KMS::Key", "AwsKmsKey"),
        ("AWS::WAFv2::WebACL", "AwsWafv2WebAcl"),
        ("AWS::Events::EventBus", "AwsEventsEventbus"),
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", "AwsElbv2LoadBalancer"),
        ("AWS::ElasticLoadBalancing::LoadBalancer", "AwsElbLoadBalancer"),
        ("AWS::ACM::Certificate", "AwsCertificateManagerCertificate"),
        ("AWS::OpenSearch::Domain", "AwsOpenSearchServiceDomain"),
        ("AWS::StepFunctions::StateMachine", "AwsStepFunctionStateMachine"),
        ("AWS::::Account", "AwsAccount"),
        ("AWS::EC2::Host", "Other"),
        ("AWS::Config::ResourceCompliance", "Other"),
        ("Custom::Thing", "Other"),
        ("AWS::S3", "Other"),
        ("", "Other"),
    ],
)
def test_the_asff_type_of_a_config_resource_type(resource_type: str, expected: str) -> None:
    assert asff_type(resource_type) == expected


def test_the_type_table_holds_only_types_security_hub_has() -> None:
    model = botocore.session.get_session().get_service_model("securityhub")
    details = set(model.shape_for("ResourceDetails").members)

    assert details >= ASFF_RESOURCE_TYPES
    assert set(TYPE_EXCEPTIONS.values()) - {ACCOUNT_TYPE} <= ASFF_RESOURCE_TYPES


def test_no_exception_is_one_the_rule_gives_anyway() -> None:
    folded = {name.lower() for name in ASFF_RESOURCE_TYPES}
    for resource_type in TYPE_EXCEPTIONS:
        service_and_type = "".join(resource_type.split("::")[1:])
        assert f"aws{service_and_type}".lower() not in folded, resource_type


ORIGIN = Origin("123456789012", "eu-west-1", "aws")


@pytest.mark.parametrize(
    ("resource_type", "resource_id", "expected"),
    [
        ("AWS::S3::Bucket", "my-bucket", "arn:aws:s3:::my-bucket"),
        ("AWS::EC2::Instance", "i-0abc", "arn:aws:ec2:eu-west-1:123456789012:instance/i-0abc"),
        ("AWS::EC2::SecurityGroup", "sg-1", "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-1"),
        ("AWS::EC2::Volume", "vol-1", "arn:aws:ec2:eu-west-1:123456789012:volume/vol-1"),
        ("AWS::EC2::VPC", "vpc-1", "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-1"),
        ("AWS::EC2::Subnet", "subnet-1", "arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-1"),
        ("AWS::Lambda::Function", "resize", "arn:aws:lambda:eu-west-1:123456789012:function:resize"),
        ("AWS::DynamoDB::Table", "orders", "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"),
        ("AWS::KMS::Key", "1234abcd-12ab", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab"),
        ("AWS::::Account", "123456789012", "AWS::::Account:123456789012"),
        # Already an ARN: kept.
        (
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/1",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/1",
        ),
        # IAM's resourceId is the unique id (AROA…), not the name an ARN needs: it stays the id.
        ("AWS::IAM::Role", "AROAJQABLZS4A3QDU576Q", "AROAJQABLZS4A3QDU576Q"),
        ("AWS::RDS::DBInstance", "db-ABCDEFGHIJKL", "db-ABCDEFGHIJKL"),
        ("AWS::EC2::Host", "h-1", "h-1"),
        # An id that had to be cleaned names nothing an ARN could be made of.
        ("AWS::S3::Bucket", "bad\x00name", "badname"),
    ],
)
def test_the_resource_id_is_an_arn_where_one_can_be_made(resource_type: str, resource_id: str, expected: str) -> None:
    assert config_resource_id(resource_type, resource_id, ORIGIN) == expected


def test_a_resource_id_too_long_for_an_arn_stays_the_id_within_bounds() -> None:
    assert config_resource_id("AWS::S3::Bucket", "b" * 505, ORIGIN) == "b" * 505
    assert len(config_resource_id("AWS::S3::Bucket", "b" * 900, ORIGIN)) == Limits.ID
