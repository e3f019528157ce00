"""Network layer: VPC, public and private subnets per AZ, IGW, NAT, routes, S3 endpoint, flow logs.

The interface endpoints live in the endpoints layer: they need the endpoint security group,
and the security layer needs this layer's VPC, so putting them here would be a cycle.
"""

from __future__ import annotations

from troposphere import Cidr as CidrFn
from troposphere import Equals, GetAtt, If, Join, Ref, Select, Sub, Tags, ec2, iam, logs

from stacks import names, policies
from stacks.base import LOG_RETENTION, Layer, add_output
from stacks.parameters import Param, string

NAT_PER_AZ = "NatPerAz"
# Fn::Cidr's third argument is the number of HOST bits of each subnet, not bits added to the
# VPC prefix: 8 gives /24 subnets (256 addresses, 251 usable; each task takes one ENI address)
# in any VPC from /16 to /18; 2 x az_count of them always fit (a /18 holds 64).
SUBNET_CIDR_BITS = 8


class NetworkLayer(Layer):
    logical_id = "Network"
    file_name = "network.json"
    description = "Network: VPC, public/private subnets, NAT, routes, S3 gateway endpoint, flow logs"
    root_outputs = (names.VPC_ID,)

    def parameters(self):
        return (
            string(names.VPC_CIDR, "VPC CIDR block, a /16 to /18 private range",
                   default="10.0.0.0/16",
                   pattern=r"^(10|172|192)\.\d{1,3}\.\d{1,3}\.\d{1,3}/(1[6-8])$",
                   constraint="a private IPv4 CIDR with a prefix of /16 to /18"),
            # Not Fn::GetAZs: GPU instance types are not offered in every AZ, so names are chosen.
            Param(names.AVAILABILITY_ZONES, "List<AWS::EC2::AvailabilityZone::Name>",
                  f"Exactly {self.settings.az_count} availability zone names that offer the GPU "
                  "instance type (generation setting az_count); extra names are ignored"),
            string(names.NAT_GATEWAY_MODE, "single: one NAT gateway shared by all AZs (cheap); "
                   "per-az: one per AZ (no cross-AZ dependency)",
                   allowed_values=("single", "per-az"), default="single"),
            string(names.KMS_KEY_ARN, "KMS key ARN for the flow log group"),
            LOG_RETENTION,
        )

    def build(self):
        t = self.new_template()
        n = self.settings.az_count
        declared = self.add_parameters(t)
        vpc_cidr, azs, nat_mode, kms_key, retention = (declared[name] for name in (
            names.VPC_CIDR, names.AVAILABILITY_ZONES, names.NAT_GATEWAY_MODE, names.KMS_KEY_ARN,
            names.LOG_RETENTION_DAYS))
        t.add_condition(NAT_PER_AZ, Equals(Ref(nat_mode), "per-az"))

        vpc = t.add_resource(ec2.VPC(
            "Vpc", CidrBlock=Ref(vpc_cidr), EnableDnsHostnames=True, EnableDnsSupport=True,
            Tags=Tags(Name=Ref("AWS::StackName")),
        ))
        igw = t.add_resource(ec2.InternetGateway("InternetGateway"))
        attachment = t.add_resource(ec2.VPCGatewayAttachment(
            "InternetGatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(igw),
        ))
        subnet_cidrs = CidrFn(GetAtt(vpc, "CidrBlock"), 2 * n, SUBNET_CIDR_BITS)

        public_rt = t.add_resource(ec2.RouteTable("PublicRouteTable", VpcId=Ref(vpc)))
        t.add_resource(ec2.Route(
            "PublicDefaultRoute", RouteTableId=Ref(public_rt), DestinationCidrBlock="0.0.0.0/0",
            GatewayId=Ref(igw), DependsOn=attachment.title,
        ))

        public_subnets, private_subnets, private_rts, nats = [], [], [], []
        for i in range(n):
            az = Select(i, Ref(azs))
            k = i + 1
            public = t.add_resource(ec2.Subnet(
                f"PublicSubnet{k}", VpcId=Ref(vpc), AvailabilityZone=az,
                CidrBlock=Select(i, subnet_cidrs), MapPublicIpOnLaunch=False,
                Tags=Tags(Name=Sub(f"${{AWS::StackName}}-public-{k}")),
            ))
            private = t.add_resource(ec2.Subnet(
                f"PrivateSubnet{k}", VpcId=Ref(vpc), AvailabilityZone=az,
                CidrBlock=Select(n + i, subnet_cidrs), MapPublicIpOnLaunch=False,
                Tags=Tags(Name=Sub(f"${{AWS::StackName}}-private-{k}")),
            ))
            public_subnets.append(public)
            private_subnets.append(private)
            t.add_resource(ec2.SubnetRouteTableAssociation(
                f"PublicSubnet{k}RouteTableAssociation", SubnetId=Ref(public),
                RouteTableId=Ref(public_rt),
            ))

            # NAT 1 always exists; the others only in per-az mode.
            condition = {} if k == 1 else {"Condition": NAT_PER_AZ}
            eip = t.add_resource(ec2.EIP(
                f"NatEip{k}", Domain="vpc", DependsOn=attachment.title, **condition,
            ))
            nats.append(t.add_resource(ec2.NatGateway(
                f"NatGateway{k}", AllocationId=GetAtt(eip, "AllocationId"),
                SubnetId=Ref(public), Tags=Tags(Name=Sub(f"${{AWS::StackName}}-nat-{k}")),
                **condition,
            )))

            private_rt = t.add_resource(ec2.RouteTable(f"PrivateRouteTable{k}", VpcId=Ref(vpc)))
            private_rts.append(private_rt)
            nat_id = Ref(nats[0]) if k == 1 else If(NAT_PER_AZ, Ref(nats[i]), Ref(nats[0]))
            t.add_resource(ec2.Route(
                f"PrivateDefaultRoute{k}", RouteTableId=Ref(private_rt),
                DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat_id,
            ))
            t.add_resource(ec2.SubnetRouteTableAssociation(
                f"PrivateSubnet{k}RouteTableAssociation", SubnetId=Ref(private),
                RouteTableId=Ref(private_rt),
            ))

        # Image layers (several GB with a baked model) come from S3: the gateway endpoint is
        # free and keeps that traffic off the NAT gateway's per-GB charge.
        t.add_resource(ec2.VPCEndpoint(
            "S3GatewayEndpoint", VpcId=Ref(vpc), VpcEndpointType="Gateway",
            ServiceName=Sub("com.amazonaws.${AWS::Region}.s3"),
            RouteTableIds=[Ref(rt) for rt in private_rts],
        ))

        flow_log_group = t.add_resource(logs.LogGroup(
            "FlowLogGroup", RetentionInDays=Ref(retention), KmsKeyId=Ref(kms_key),
            DeletionPolicy="Retain", UpdateReplacePolicy="Retain",
        ))
        flow_log_role = t.add_resource(iam.Role(
            "FlowLogRole",
            AssumeRolePolicyDocument=policies.flow_logs_trust(),
            Policies=[iam.Policy(
                PolicyName="deliver-flow-logs",
                PolicyDocument=policies.flow_logs_delivery(GetAtt(flow_log_group, "Arn")),
            )],
        ))
        t.add_resource(ec2.FlowLog(
            "VpcFlowLog", ResourceId=Ref(vpc), ResourceType="VPC", TrafficType="ALL",
            LogDestinationType="cloud-watch-logs", LogGroupName=Ref(flow_log_group),
            DeliverLogsPermissionArn=GetAtt(flow_log_role, "Arn"),
        ))

        add_output(t, names.VPC_ID, Ref(vpc), "VPC ID")
        add_output(t, names.VPC_CIDR, GetAtt(vpc, "CidrBlock"), "VPC CIDR block")
        add_output(t, names.SUBNET_AVAILABILITY_ZONES, Join(",", [Select(i, Ref(azs)) for i in range(n)]),
                   "The AZs in use, in subnet order (the Auto Scaling group's AZs)")
        add_output(t, names.PUBLIC_SUBNET_IDS, Join(",", [Ref(s) for s in public_subnets]),
                   "Public subnet IDs, one per AZ, comma-separated (ALB)")
        add_output(t, names.PRIVATE_SUBNET_IDS, Join(",", [Ref(s) for s in private_subnets]),
                   "Private subnet IDs, one per AZ, comma-separated (instances, tasks, endpoints)")
        add_output(t, names.PRIVATE_ROUTE_TABLE_IDS, Join(",", [Ref(r) for r in private_rts]),
                   "Private route table IDs, comma-separated")
        return t

