"""deepseek-serving: read the stack's inventory once, build the components, export outputs."""
import pulumi
import pulumi_aws as aws

from components.config import InventoryError, load_inventory
from components.keys import StackKeys, StackKeysArgs
from components.network import Network, NetworkArgs

try:
    inventory = load_inventory()
except InventoryError as error:
    # RunError prints the message without a traceback and registers nothing further.
    raise pulumi.RunError(str(error)) from None

stack = pulumi.get_stack()
aws_provider = aws.Provider(
    "aws",
    region=inventory.region,
    default_tags={"tags": {
        **inventory.tags,
        "project": "deepseek-serving",
        "environment": inventory.environment,
        "stack": stack,
        "managed-by": "pulumi",
    }},
)
aws_opts = pulumi.ResourceOptions(providers={"aws": aws_provider})
identity = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=aws_provider))

keys = StackKeys("keys", StackKeysArgs(region=inventory.region, account_id=identity.account_id),
                 opts=aws_opts)
network = Network(
    "net",
    NetworkArgs(settings=inventory.network, region=inventory.region, logs_key_arn=keys.logs_key_arn,
                private_subnet_tags={"kubernetes.io/role/internal-elb": "1"}
                if inventory.platform == "eks" else {}),
    opts=aws_opts,
)

pulumi.export("region", inventory.region)
pulumi.export("platform", inventory.platform)
pulumi.export("vpc_id", network.vpc_id)
pulumi.export("private_subnet_ids", network.private_subnet_ids)
