from tortoise import migrations
from tortoise.migrations import operations as ops
from forum.models import PostState
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial'), ('forum', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Post',
            name='state',
            field=fields.CharEnumField(default=PostState.VISIBLE, description='VISIBLE: visible\nHIDDEN: hidden\nREMOVED: removed', enum_type=PostState, max_length=16),
        ),
        ops.AddField(
            model_name='Post',
            name='state_seq',
            field=fields.BigIntField(null=True),
        ),
    ]
