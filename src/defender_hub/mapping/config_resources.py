"""AWS Config's resources in ASFF: the resource type (`AWS::S3::Bucket` → `AwsS3Bucket`) and the Id (an ARN)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from defender_hub.codecs.asff_rules import Limits
from defender_hub.mapping.aws import Origin, account_resource_id
from defender_hub.mapping.resources import OTHER_TYPE
from defender_hub.text import clean

__all__ = [
    "ACCOUNT_CONFIG_TYPE",
    "ACCOUNT_TYPE",
    "ASFF_RESOURCE_TYPES",
    "TYPE_EXCEPTIONS",
    "asff_type",
    "config_resource_id",
]

ASFF_RESOURCE_TYPES = frozenset(
    {
        "AwsAmazonMqBroker",
        "AwsApiGatewayRestApi",
        "AwsApiGatewayStage",
        "AwsApiGatewayV2Api",
        "AwsApiGatewayV2Stage",
        "AwsAppSyncGraphQlApi",
        "AwsAthenaWorkGroup",
        "AwsAutoScalingAutoScalingGroup",
        "AwsAutoScalingLaunchConfiguration",
        "AwsBackupBackupPlan",
        "AwsBackupBackupVault",
        "AwsBackupRecoveryPoint",
        "AwsCertificateManagerCertificate",
        "AwsCloudFormationStack",
        "AwsCloudFrontDistribution",
        "AwsCloudTrailTrail",
        "AwsCloudWatchAlarm",
        "AwsCodeBuildProject",
        "AwsDmsEndpoint",
        "AwsDmsReplicationInstance",
        "AwsDmsReplicationTask",
        "AwsDynamoDbTable",
        "AwsEc2ClientVpnEndpoint",
        "AwsEc2Eip",
        "AwsEc2Instance",
        "AwsEc2LaunchTemplate",
        "AwsEc2NetworkAcl",
        "AwsEc2NetworkInterface",
        "AwsEc2RouteTable",
        "AwsEc2SecurityGroup",
        "AwsEc2Subnet",
        "AwsEc2TransitGateway",
        "AwsEc2Volume",
        "AwsEc2Vpc",
        "AwsEc2VpcEndpointService",
        "AwsEc2VpcPeeringConnection",
        "AwsEc2VpnConnection",
        "AwsEcrContainerImage",
        "AwsEcrRepository",
        "AwsEcsCluster",
        "AwsEcsContainer",
        "AwsEcsService",
        "AwsEcsTask",
        "AwsEcsTaskDefinition",
        "AwsEfsAccessPoint",
        "AwsEksCluster",
        "AwsElasticBeanstalkEnvironment",
        "AwsElasticsearchDomain",
        "AwsElbLoadBalancer",
        "AwsElbv2LoadBalancer",
        "AwsEventSchemasRegistry",
        "AwsEventsEndpoint",
        "AwsEventsEventbus",
        "AwsGuardDutyDetector",
        "AwsIamAccessKey",
        "AwsIamGroup",
        "AwsIamPolicy",
        "AwsIamRole",
        "AwsIamUser",
        "AwsKinesisStream",
        "AwsKmsKey",
        "AwsLambdaFunction",
        "AwsLambdaLayerVersion",
        "AwsMskCluster",
        "AwsNetworkFirewallFirewall",
        "AwsNetworkFirewallFirewallPolicy",
        "AwsNetworkFirewallRuleGroup",
        "AwsOpenSearchServiceDomain",
        "AwsRdsDbCluster",
        "AwsRdsDbClusterSnapshot",
        "AwsRdsDbInstance",
        "AwsRdsDbSecurityGroup",
        "AwsRdsDbSnapshot",
        "AwsRdsEventSubscription",
        "AwsRedshiftCluster",
        "AwsRoute53HostedZone",
        "AwsS3AccessPoint",
        "AwsS3AccountPublicAccessBlock",
        "AwsS3Bucket",
        "AwsS3Object",
        "AwsSageMakerNotebookInstance",
        "AwsSecretsManagerSecret",
        "AwsSnsTopic",
        "AwsSqsQueue",
        "AwsSsmPatchCompliance",
        "AwsStepFunctionStateMachine",
        "AwsWafRateBasedRule",
        "AwsWafRegionalRateBasedRule",
        "AwsWafRegionalRule",
        "AwsWafRegionalRuleGroup",
        "AwsWafRegionalWebAcl",
        "AwsWafRule",
        "AwsWafRuleGroup",
        "AwsWafWebAcl",
        "AwsWafv2RuleGroup",
        "AwsWafv2WebAcl",
        "AwsXrayEncryptionConfig",
    }
)
"""The AWS resource types ASFF has (each has a Resources.Details object of its name in Security Hub's API model)."""

ACCOUNT_CONFIG_TYPE = "AWS::::Account"
"""Config's type of an account, the resource of account-level rules (an IAM password policy's, say)."""
ACCOUNT_TYPE = "AwsAccount"
"""ASFF's type of an account; it has no Details object."""

TYPE_EXCEPTIONS: Mapping[str, str] = MappingProxyType(
    {
        # ASFF names these services otherwise than Config does.
        ACCOUNT_CONFIG_TYPE: ACCOUNT_TYPE,
        "AWS::ACM::Certificate": "AwsCertificateManagerCertificate",
        "AWS::ElasticLoadBalancing::LoadBalancer": "AwsElbLoadBalancer",
        "AWS::ElasticLoadBalancingV2::LoadBalancer": "AwsElbv2LoadBalancer",
        "AWS::OpenSearch::Domain": "AwsOpenSearchServiceDomain",
        "AWS::StepFunctions::StateMachine": "AwsStepFunctionStateMachine",
    }
)
"""Config resource types whose ASFF type the `Aws<Service><Type>` rule does not give."""

# The rule compares without case: Config writes `EC2`, `DynamoDB`, `DBInstance`; ASFF `Ec2`, `DynamoDb`, `DbInstance`.
_BY_FOLDED_NAME = {name.lower(): name for name in ASFF_RESOURCE_TYPES}

# ARNs of the resource types whose Config resourceId is the name or id the ARN is made of, by (service, resource):
# `{p}`, `{r}`, `{a}` are the partition, Region, account and `{id}` the resourceId. Not IAM's: Config's resourceId of an
# IAM role, user, group or policy is its unique id (AROA…, AIDA…), not the name its ARN needs, so it stays the id.
_ARN_TEMPLATES: Mapping[str, str] = MappingProxyType(
    {
        "AWS::S3::Bucket": "arn:{p}:s3:::{id}",
        "AWS::EC2::Instance": "arn:{p}:ec2:{r}:{a}:instance/{id}",
        "AWS::EC2::SecurityGroup": "arn:{p}:ec2:{r}:{a}:security-group/{id}",
        "AWS::EC2::Volume": "arn:{p}:ec2:{r}:{a}:volume/{id}",
        "AWS::EC2::VPC": "arn:{p}:ec2:{r}:{a}:vpc/{id}",
        "AWS::EC2::Subnet": "arn:{p}:ec2:{r}:{a}:subnet/{id}",
        "AWS::EC2::NetworkInterface": "arn:{p}:ec2:{r}:{a}:network-interface/{id}",
        "AWS::EC2::NetworkAcl": "arn:{p}:ec2:{r}:{a}:network-acl/{id}",
        "AWS::EC2::RouteTable": "arn:{p}:ec2:{r}:{a}:route-table/{id}",
        "AWS::EC2::InternetGateway": "arn:{p}:ec2:{r}:{a}:internet-gateway/{id}",
        "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{id}",
        "AWS::DynamoDB::Table": "arn:{p}:dynamodb:{r}:{a}:table/{id}",
        "AWS::KMS::Key": "arn:{p}:kms:{r}:{a}:key/{id}",
    }
)


def asff_type(resource_type: str) -> str:
    """Returns the ASFF type of a Config resource type: an exception, else `Aws<Service><Type>` where ASFF has it,
    else `Other`."""
    exception = TYPE_EXCEPTIONS.get(resource_type)
    if exception is not None:
        return exception
    parts = resource_type.split("::")
    if len(parts) != 3 or parts[0] != "AWS" or not parts[1] or not parts[2]:
        return OTHER_TYPE
    return _BY_FOLDED_NAME.get(f"aws{parts[1]}{parts[2]}".lower(), OTHER_TYPE)


def config_resource_id(resource_type: str, resource_id: str, origin: Origin) -> str:
    """Returns the ASFF Id of a Config resource: its resourceId when that is an ARN, the ARN made from it where its
    type's ARN is made of it (`AWS::::Account:<id>` for an account), else the resourceId; cleaned, at most 512."""
    cleaned = clean(resource_id, Limits.ID)
    if cleaned != resource_id or cleaned.startswith("arn:"):
        return cleaned  # an id that had to be cleaned or cut names nothing an ARN could be made of
    if resource_type == ACCOUNT_CONFIG_TYPE:
        return account_resource_id(resource_id)
    template = _ARN_TEMPLATES.get(resource_type)
    if template is None:
        return cleaned
    arn = template.format(p=origin.partition, r=origin.region, a=origin.account_id, id=resource_id)
    return arn if len(arn) <= Limits.ID else cleaned
