"""Train a segmentation teacher (DeepLabV3-ResNet50) on CamVid or NYUv2.

    python train_teacher_seg.py --model deeplabv3_resnet50 --dataset camvid \\
        --data_root ./data/CamVid --scheduler --lr 0.1 --num_classes 11

Saves the best model (test mIoU) to ``checkpoint/teacher/<dataset>-<model>.pt`` as a
bare state_dict, the format of the published teachers, and ends with ``Best mIoU=<float>``.
"""
from dataloader import get_test_loader, get_train_loader, num_classes
from network.segmentation import PretrainedWeightsUnavailable, deeplabv3_resnet50
from utils.engine import supervised
from utils.engine.losses import FocalLoss
from utils.metrics.segmentation import segmentation_evaluator
from utils.reporting import records
from utils.runtime import checkpoint, cli, distributed
from utils.runtime.errors import UserError

DATASETS = ("camvid", "nyuv2")
DEFAULT_LR = {"camvid": 0.1, "nyuv2": 0.05}
DATA_ROOTS = {"camvid": "data/CamVid", "nyuv2": "data/NYUv2"}


def get_args_parser():
    parser = cli.new_parser("Train a DFAD segmentation teacher")
    cli.add_common_args(parser, batch_size=16, test_batch_size=16, epochs=200, weight_decay=5e-4,
                        dataset="camvid", datasets=sorted(DATASETS), step_size=100)
    parser.set_defaults(data_root=None)
    parser.add_argument("--lr", type=cli.positive_float, default=None,
                        help="SGD learning rate (default: 0.1 for camvid, 0.05 for nyuv2)")
    parser.add_argument("--gamma", type=cli.positive_float, default=0.1,
                        help="learning-rate decay factor every --step_size epochs (with --scheduler)")
    parser.add_argument("--model", default="deeplabv3_resnet50", choices=["deeplabv3_resnet50"],
                        help="teacher network")
    parser.add_argument("--no_pretrained_backbone", action="store_true",
                        help="start the backbone from random weights instead of ImageNet ones "
                             "(which are downloaded)")
    return cli.add_teacher_args(parser)


def check_args(args):
    cli.check_num_classes(args, num_classes(args.dataset))
    args.lr = args.lr or DEFAULT_LR[args.dataset]
    args.data_root = args.data_root or DATA_ROOTS[args.dataset]


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    check_args(args)
    device = cli.setup(args)
    save_path = supervised.save_path(args)
    test_loader = get_test_loader(args)
    start_from = args.ckpt or (save_path if args.test_only else None)
    # ImageNet weights would be overwritten by the checkpoint at once: skip their download.
    try:
        model = deeplabv3_resnet50(args.num_classes, dropout_p=0.5,
                                   pretrained_backbone=not (args.no_pretrained_backbone or start_from))
    except PretrainedWeightsUnavailable as e:
        raise UserError(str(e)) from None
    if start_from:
        checkpoint.load_weights(model, start_from, "teacher checkpoint",
                                hint="Train one with this script (without --test_only).",
                                context=f"--dataset {args.dataset}")
    evaluate = segmentation_evaluator(args.num_classes)
    if args.test_only:
        scores = evaluate(model.to(device), test_loader, device)
        print(records.format_scores("Teacher", scores))
        return scores["mIoU"]
    train_loader = get_train_loader(args, distributed.local_batch_size(args.batch_size))
    return supervised.fit(args, model, train_loader, test_loader, device,
                          loss_fn=FocalLoss(gamma=2, ignore_index=255), evaluate=evaluate,
                          metric_name="mIoU", save_path=save_path, gamma=args.gamma)


if __name__ == "__main__":
    cli.main_guard(main)
